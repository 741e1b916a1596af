#!/bin/sh
# kv_cache.sh — issue 17's KV-sharing figures on the GPU machine: the next
# turn of a chat with an 8K and a 13K-token history (time to first token
# from the prefix cache vs cold), one 16K-token prompt beside 15 short
# streams, and 16 streams' aggregate, through `apr serve` (bench/serve_load.lua
# --mode kv; a table last). Synthesizes the Qwen2.5-Coder-32B Q4_K_M layout
# with the real vocabulary if the file is missing.
#
#   APR=dist/apr/apr bench/kv_cache.sh [MODEL.gguf] [serve_load options...]
#   APR=dist/apr/apr bench/kv_cache.sh /tmp/c32.gguf --history 8192 --reps 1   (quicker)
#
# First it starts `apr serve --gpu --vram-budget 24G` (BUDGET=...; NO_BUDGET=1
# skips it) and reports the KV pool the budget left room for.
#
# On the CPU with the default model (small sizes):
#   NO_BUDGET=1 bench/kv_cache.sh models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
#       --serve "--parallel 16 --ctx 8192" --history 1024,2048 --long 2048 --tokens 32 --reps 1
set -e
APR=${APR:-./apr}
MODEL=${1:-/tmp/c32.gguf}
[ $# -gt 0 ] && shift
if [ ! -f "$MODEL" ]; then
    "$APR" synth --preset qwen2.5-coder-32b --layout q4_k_m \
        --vocab "$(dirname "$0")/../tests/fixtures/tokenizer/tokenizer.json.zst" "$MODEL"
fi
# --vram-budget on serve: the pool gets what the budget leaves (the log's
# "model ready ... ctx=N" line says how many tokens).
if [ -z "$NO_BUDGET" ]; then
    log=$(mktemp)
    "$APR" serve "$MODEL" --gpu --vram-budget "${BUDGET:-24G}" --parallel 16 --port 0 2>"$log" &
    pid=$!
    for _ in $(seq 1 180); do
        grep -q "model ready\|cannot load" "$log" && break
        kill -0 $pid 2>/dev/null || break
        sleep 1
    done
    echo "apr serve --vram-budget ${BUDGET:-24G}: $(grep -o 'model ready.*' "$log" | grep -o 'ctx=[0-9]*' || tail -1 "$log")"
    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    rm -f "$log"
fi
exec "$APR" run "$(dirname "$0")/serve_load.lua" --model "$MODEL" --mode kv \
    --serve "--gpu --parallel 16 --ctx 32768" --history 8192,13312 --long 16384 --tokens 128 --reps 2 "$@"
