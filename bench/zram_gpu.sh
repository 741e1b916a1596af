#!/bin/sh
# zram_gpu.sh — issue 15's figures on the GPU machine, from a bundle
# (dist/apr), in under 8 minutes, a table last:
#   1. the same-filled classification kernel's GB/s as a fraction of the
#      copy bandwidth measured in the same run (bench/zram_gpu.lua);
#   2. LZ4 and ZSTD on the KV of the 32B (bench/zram_codec.lua, 512 tokens
#      of each prompt: the synthetic model's KV, random weights);
#   3. the second turn's time to first token after its KV was swapped out,
#      against recomputed, with 8K and 16K-token histories, and 16 streams'
#      aggregate with swapping active vs idle (bench/zram_swap.lua);
#   4. conversations held at once with the pool and without, under
#      --vram-budget 24G (bench/zram_swap.lua --mode held).
# Synthesizes the Qwen2.5-Coder-32B Q4_K_M layout with the real vocabulary
# if the model file is missing.
#
#   APR=dist/apr/apr bench/zram_gpu.sh [MODEL.gguf]
set -e
APR=${APR:-dist/apr/apr}
HERE=$(dirname "$0")
MODEL=${1:-/tmp/c32.gguf}
if [ ! -f "$MODEL" ]; then
    "$APR" synth --preset qwen2.5-coder-32b --layout q4_k_m \
        --vocab "$HERE/../tests/fixtures/tokenizer/tokenizer.json.zst" "$MODEL"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$APR" run "$HERE/zram_gpu.lua" --gib 4 | tee "$out/kernel"
"$APR" run "$HERE/zram_codec.lua" --model "$MODEL" --gpu --tokens 512 | tee "$out/codec"
"$APR" run "$HERE/zram_swap.lua" --model "$MODEL" --gpu --mode ttft,streams --history 8192,16384 --reps 1 \
    --streams 16 --tokens 128 --conv-tokens 4096 | tee "$out/swap"
"$APR" run "$HERE/zram_swap.lua" --model "$MODEL" --gpu --vram-budget 24G --mode held --conv-tokens 4096 \
    --conversations 12 | tee "$out/held"
echo
echo "==== zram on $(basename "$MODEL") ===="
cat "$out/kernel"
echo
cat "$out/codec"
echo
grep '^  ' "$out/swap" "$out/held" | sed 's/^[^:]*://'
