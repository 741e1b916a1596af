#!/bin/sh
# test_summary.sh DIR PART... — adds up DIR/PART.counts ("passed failed
# skipped") and prints the one line CI reads. A part that left no counts file
# crashed before it could finish: that counts as a failure.
dir=$1; shift
passed=0; failed=0; skipped=0
for part in "$@"; do
    f="$dir/$part.counts"
    if [ -s "$f" ]; then
        read -r p fl s < "$f"
        passed=$((passed + p)); failed=$((failed + fl)); skipped=$((skipped + s))
    else
        echo "$part: no results (the test run crashed or was not built)"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
