#!/bin/sh
# trace_gpu.sh — issue 14 on the GPU machine, from a bundle (make bundle):
#  1. synthesizes the Qwen2.5-Coder-32B Q4_K_M layout if it is missing
#     (the real Qwen2 vocabulary, so prompts count as on the real file);
#  2. `apr trace --kernels` of a greedy decode of 64 tokens (apr pass --gpu);
#  3. bench/trace_gpu_check.lua: every kernel named, the kernels of the
#     decode steps >= 90% of them;
#  4. bench/trace_overhead.lua --gpu: decode tokens/s with spans off / on,
#     side by side; then again with --kernels (CUPTI on while the model
#     loads, then off / spans / spans and kernels, side by side).
# Files under $OUT (default /tmp/trace-gpu): summary.txt, summary.json,
# check.txt, overhead.txt, trace.svg, trace.folded, trace.json.gz.
#
#   APR=dist/apr/apr OUT=$OUT sh bench/trace_gpu.sh [/tmp/c32.gguf]
set -e
here=$(dirname "$0")
APR=${APR:-dist/apr/apr}
OUT=${OUT:-/tmp/trace-gpu}
MODEL=${1:-/tmp/c32.gguf}
mkdir -p "$OUT"
if [ ! -f "$MODEL" ]; then
    "$APR" synth --preset qwen2.5-coder-32b --layout q4_k_m \
        --vocab "$here/../tests/fixtures/tokenizer/tokenizer.json.zst" "$MODEL"
fi
dir=$(mktemp -d)
"$APR" trace --kernels -o "$dir" -- "$APR" pass "$MODEL" --gpu --raw --max-tokens 64 --ignore-eos \
    --prompt 'fn fibonacci(n: u64) -> u64 { // iterative, with overflow checks, and tests below' >/dev/null
cp "$dir/summary.txt" "$dir/summary.json" "$dir/trace.svg" "$dir/trace.folded" "$OUT/"
gzip -c "$dir/trace.json" > "$OUT/trace.json.gz"
status=0
"$APR" run "$here/trace_gpu_check.lua" "$dir" > "$OUT/check.txt" || status=1
"$APR" run "$here/trace_overhead.lua" "$MODEL" --gpu --tokens 64 --rounds 6 --out "$dir/spans.txt" >/dev/null
"$APR" run "$here/trace_overhead.lua" "$MODEL" --gpu --kernels --tokens 64 --rounds 6 --out "$dir/cupti.txt" >/dev/null
cat "$dir/spans.txt" "$dir/cupti.txt" > "$OUT/overhead.txt"
rm -rf "$dir"
echo
cat "$OUT/summary.txt" "$OUT/check.txt" "$OUT/overhead.txt"
exit $status
