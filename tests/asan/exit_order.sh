#!/bin/sh
# exit_order.sh [COUNTS_FILE] — `apr` must exit cleanly whatever order Lua's
# finalizers free a model, its context and its engine in (issue 16: 7 of 20
# runs of `apr pass` hit a heap-use-after-free at exit under ASan). Runs
# `$APR_BIN pass` and tests/asan/exit_order.lua RUNS times each (the order
# varies from run to run); every run must exit 0 with nothing on stderr (a
# sanitizer report is on stderr). `make test-asan` runs it with APR_BIN set
# to the AddressSanitizer build. Writes "passed failed skipped" to
# COUNTS_FILE if given.
cd "$(dirname "$0")/../.." || exit 1
apr=${APR_BIN:-./apr}
model=tests/fixtures/models/tiny-q8_0.gguf
runs=${RUNS:-20}
counts=$1
passed=0; failed=0
err=$(mktemp); trap 'rm -f "$err"' EXIT
check() {
    name=$1; shift
    bad=0
    i=0
    while [ "$i" -lt "$runs" ]; do
        i=$((i + 1))
        "$apr" "$@" >/dev/null 2>"$err" </dev/null
        code=$?
        if [ "$code" -ne 0 ] || [ -s "$err" ]; then
            bad=$((bad + 1))
            [ "$bad" -eq 1 ] && { echo "FAIL $name (run $i: exit $code)"; head -20 "$err" | sed 's/^/    /'; }
        fi
    done
    if [ "$bad" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "    $bad of $runs runs failed"; fi
}
check "pass exits cleanly" pass "$model" --prompt hi --max-tokens 2
check "model, context and engine freed at exit" run tests/asan/exit_order.lua "$model"
echo "exit order: $passed passed, $failed failed, 0 skipped"
[ -n "$counts" ] && echo "$passed $failed 0" > "$counts"
[ "$failed" -eq 0 ]
