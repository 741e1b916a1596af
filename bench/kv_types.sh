#!/bin/sh
# kv_types.sh — issue 17's quantized KV cache on the GPU machine, in one
# command: the CUDA op tests (quantized caches against the CPU among them),
# the f16 goldens, the KL divergence of q8_0 and q4_0 caches against f16
# (tests/kv_quality.lua: the golden models and the default model, 2,048
# positions each), and bench/kv_types.lua on the synthetic
# Qwen2.5-Coder-32B Q4_K_M with the real vocabulary (synthesized first if
# missing). Each part's output goes to $OUT/*.log; a summary table is last.
#
#   make -j16 bundle build/test_runtime && bench/kv_types.sh [MODEL.gguf]
#
# APR (default dist/apr/apr) is the binary; OUT (default /tmp/kv_types) the
# folder for the logs. Exit status: 0 when every part passed.
APR=${APR:-dist/apr/apr}
MODEL=${1:-/tmp/c32.gguf}
OUT=${OUT:-/tmp/kv_types}
mkdir -p "$OUT"
status=0
if [ ! -f "$MODEL" ]; then
    "$APR" synth --preset qwen2.5-coder-32b --layout q4_k_m \
        --vocab "$(dirname "$0")/../tests/fixtures/tokenizer/tokenizer.json.zst" "$MODEL" || exit 1
fi

echo "== CUDA op tests (build/test_runtime cuda)"
build/test_runtime cuda 2>&1 | tee "$OUT/ops.log" | tail -3
grep -q " 0 failed" "$OUT/ops.log" || status=1

echo "== f16 goldens and the quantized-KV spec on every device"
"$APR" run tests/busted.lua tests/lua/apr/model_golden_spec.lua tests/lua/apr/kv_type_spec.lua 2>&1 \
    | tee "$OUT/specs.log" | tail -3
grep -q " 0 failed" "$OUT/specs.log" || status=1

echo "== KL divergence against f16, CUDA (tests/kv_quality.lua)"
"$APR" run tests/kv_quality.lua --device cuda > "$OUT/kld.log" 2>&1 || status=1
tail -14 "$OUT/kld.log"

echo "== speed and memory (bench/kv_types.lua)"
"$APR" run bench/kv_types.lua "$MODEL" > "$OUT/bench.log" 2>&1 || status=1

echo
echo "## issue 17 on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), git $(git rev-parse --short HEAD 2>/dev/null)"
echo
echo "op tests: $(tail -1 "$OUT/ops.log")"
echo "specs:    $(tail -1 "$OUT/specs.log")"
echo
sed -n '/^| model/,$p' "$OUT/kld.log"
echo
sed -n '/^| measurement/,$p' "$OUT/bench.log"
[ $status -eq 0 ] || echo "(a part failed: see $OUT/*.log)"
exit $status
