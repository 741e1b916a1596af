#!/bin/sh
# run.sh [COUNTS_FILE] — runs `$APR_BIN info`, `verify --deep` and `pass` on
# every file of the malformed corpus in tests/fixtures/malformed, as
# tests/fixtures/malformed/EXPECTED says (tests/malformed/gen.py writes both):
#   file   every command exits 1 with exactly one line on stderr, holding the
#          fragment EXPECTED lists (the reader's error);
#   model  info exits 0; verify and pass exit 1 with one line holding the
#          fragment (the loader's error: verify runs the loader's checks);
#   ok     every command exits 0 with nothing on stderr.
# And on every malformed APR file in tests/fixtures/malformed-apr
# (tests/malformed/gen_apr.lua), `convert FILE --output OUT.gguf`, which
# reads every chunk so corrupt compressed streams reach the decoders: exit 1,
# one line holding the fragment tests/fixtures/malformed-apr/EXPECTED lists,
# no OUT.gguf left.
# A crash, a signal, a hang (60 s), a sanitizer report (which adds lines) or
# a wrong exit is a failure. Writes "passed failed skipped" to COUNTS_FILE if
# given (one count per file). `make test-asan` runs it with APR_BIN pointing
# at the AddressSanitizer build.
cd "$(dirname "$0")/../.." || exit 1
apr=${APR_BIN:-./apr}
dir=tests/fixtures/malformed
counts=$1
passed=0; failed=0
err=$(mktemp); trap 'rm -f "$err"' EXIT

# check NAME EXIT FRAGMENT COMMAND... : sets $problem when it goes wrong
# (sh has no locals: these names are check's own)
check() {
    c_code=$2; c_fragment=$3; shift 3
    timeout -k 5 60 "$apr" "$@" >/dev/null 2>"$err" </dev/null
    code=$?
    lines=$(wc -l < "$err")
    what="apr $1"
    if [ "$code" -ne "$c_code" ]; then problem="$what: exit $code (want $c_code)"
    elif [ "$c_code" -eq 0 ] && [ "$lines" -ne 0 ]; then problem="$what: $lines lines on stderr (want none)"
    elif [ "$c_code" -ne 0 ] && [ "$lines" -ne 1 ]; then problem="$what: $lines lines on stderr (want 1)"
    elif [ "$c_code" -ne 0 ] && ! grep -qF -- "$c_fragment" "$err"; then problem="$what: message lacks '$c_fragment'"
    fi
    [ -n "$problem" ] && sed 's/^/    /' "$err" | head -20 > "$err.shown"
}

for file in "$dir"/*.gguf; do
    name=$(basename "$file")
    kind=$(awk -F '\t' -v n="$name" '$1 == n { print $2 }' "$dir/EXPECTED")
    want=$(awk -F '\t' -v n="$name" '$1 == n { print $3 }' "$dir/EXPECTED")
    problem=
    rm -f "$err.shown"
    case "$kind" in
    file) info=1; load=1 ;;
    model) info=0; load=1 ;;
    ok) info=0; load=0 ;;
    *) problem="no EXPECTED entry" ;;
    esac
    if [ -z "$problem" ]; then
        check "$name" "$info" "$want" info --no-hash "$file"
        [ -z "$problem" ] && check "$name" "$load" "$want" verify --deep "$file"
        [ -z "$problem" ] && check "$name" "$load" "$want" pass "$file" --prompt hi --raw --max-tokens 1
    fi
    if [ -z "$problem" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: $problem"
        [ -f "$err.shown" ] && cat "$err.shown"
    fi
done
out=$(mktemp -d)
for file in tests/fixtures/malformed-apr/*.apr; do
    name=$(basename "$file")
    want=$(awk -F '\t' -v n="$name" '$1 == n { print $2 }' tests/fixtures/malformed-apr/EXPECTED)
    problem=
    rm -f "$err.shown"
    if [ -z "$want" ]; then problem="no EXPECTED entry"
    else check "$name" 1 "$want" convert "$file" --output "$out/back.gguf"
    fi
    [ -z "$problem" ] && [ -n "$(ls -A "$out")" ] && problem="left $(ls -A "$out")"
    rm -f "$out"/*
    if [ -z "$problem" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: $problem"
        [ -f "$err.shown" ] && cat "$err.shown"
    fi
done
rmdir "$out"
rm -f "$err.shown"
echo "malformed corpus: $passed passed, $failed failed, 0 skipped"
[ -n "$counts" ] && echo "$passed $failed 0" > "$counts"
[ "$failed" -eq 0 ]
