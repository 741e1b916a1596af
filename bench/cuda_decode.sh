#!/bin/sh
# cuda_decode.sh — issue 4's benchmark on the GPU machine: synthesizes the
# Qwen2.5-Coder-32B Q4_K_M layout if it is missing, then runs
# bench/cuda_bench.lua on it (table at the end). The vocabulary is the real
# Qwen2 tokenizer's (tests/fixtures), so prompts count as many tokens as on
# the real file (PERFORMANCE.md's "~35-token prompt"; a byte-level vocabulary
# makes every character a token).
#
#   bench/cuda_decode.sh [MODEL.gguf] [--quick]
#   APR=dist/apr/apr bench/cuda_decode.sh /tmp/coder32b.gguf
set -e
APR=${APR:-./apr}
MODEL=${1:-/tmp/coder32b-q4_k_m.gguf}
[ $# -gt 0 ] && shift
if [ ! -f "$MODEL" ]; then
    "$APR" synth --preset qwen2.5-coder-32b --layout q4_k_m \
        --vocab "$(dirname "$0")/../tests/fixtures/tokenizer/tokenizer.json.zst" "$MODEL"
fi
exec "$APR" run bench/cuda_bench.lua "$MODEL" "$@"
