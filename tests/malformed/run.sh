#!/bin/sh
# run.sh [COUNTS_FILE] — runs `$APR_BIN info` on every malformed GGUF file
# in tests/fixtures/malformed, and `$APR_BIN convert FILE --output OUT.gguf`
# on every malformed APR file in tests/fixtures/malformed-apr (which reads
# every chunk, so the corrupt compressed streams reach the decoders). Each
# must exit 1 with exactly one line on stderr, containing the fragment its
# folder's EXPECTED lists for it, and (APR) leave no OUT.gguf. A crash, a
# signal, a sanitizer report (which adds lines) or exit 0 is a failure.
# Writes "passed failed skipped" to COUNTS_FILE if given.
# `make test-asan` runs it with APR_BIN pointing at the AddressSanitizer build.
cd "$(dirname "$0")/../.." || exit 1
apr=${APR_BIN:-./apr}
dir=tests/fixtures/malformed
counts=$1
passed=0; failed=0
err=$(mktemp); out=$(mktemp -d); trap 'rm -rf "$err" "$out"' EXIT
for file in "$dir"/*.gguf tests/fixtures/malformed-apr/*.apr; do
    name=$(basename "$file")
    case "$file" in
    *.apr)
        "$apr" convert "$file" --output "$out/back.gguf" >/dev/null 2>"$err"
        code=$?
        [ -n "$(ls -A "$out")" ] && echo "$name left $(ls -A "$out")" >>"$err" && rm -f "$out"/*
        expected=tests/fixtures/malformed-apr/EXPECTED ;;
    *)
        "$apr" info --no-hash "$file" >/dev/null 2>"$err"
        code=$?
        expected=$dir/EXPECTED ;;
    esac
    lines=$(wc -l < "$err")
    want=$(awk -F '\t' -v n="$name" '$1 == n { print $2 }' "$expected")
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
