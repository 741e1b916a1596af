#!/bin/sh
# run.sh [COUNTS_FILE] — runs `$APR_BIN info` on every malformed GGUF file
# in tests/fixtures/malformed. Each must exit 1 with exactly one line on
# stderr, containing the fragment tests/fixtures/malformed/EXPECTED lists
# for it. A crash, a signal, a sanitizer report (which adds lines) or exit 0
# is a failure. Writes "passed failed skipped" to COUNTS_FILE if given.
# `make test-asan` runs it with APR_BIN pointing at the AddressSanitizer build.
cd "$(dirname "$0")/../.." || exit 1
apr=${APR_BIN:-./apr}
dir=tests/fixtures/malformed
counts=$1
passed=0; failed=0
err=$(mktemp); trap 'rm -f "$err"' EXIT
for file in "$dir"/*.gguf; do
    name=$(basename "$file")
    "$apr" info --no-hash "$file" >/dev/null 2>"$err"
    code=$?
    lines=$(wc -l < "$err")
    want=$(awk -F '\t' -v n="$name" '$1 == n { print $2 }' "$dir/EXPECTED")
    problem=
    if [ "$code" -ne 1 ]; then problem="exit $code (want 1)"
    elif [ "$lines" -ne 1 ]; then problem="$lines lines on stderr (want 1)"
    elif [ -z "$want" ]; then problem="no EXPECTED entry"
    elif ! grep -qF -- "$want" "$err"; then problem="message lacks '$want'"
    fi
    if [ -z "$problem" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: $problem"
        sed 's/^/    /' "$err" | head -20
    fi
done
echo "malformed corpus: $passed passed, $failed failed, 0 skipped"
[ -n "$counts" ] && echo "$passed $failed 0" > "$counts"
[ "$failed" -eq 0 ]
