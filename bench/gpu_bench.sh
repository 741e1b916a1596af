#!/bin/bash
# gpu_bench.sh — issue 12's run on the GPU machine: `apr bench` against
# llama.cpp's llama-server (built here for sm_90 from the trimmed source
# tarball) and Ollama (skipped, with the reason, where none is running) on
# the synthetic Qwen2.5-Coder-32B Q4_K_M (prompts under its chat template
# through the completion endpoints, --api completions), at concurrency 1
# and 16, within one 10-minute call: the CUDA build (~4.5 min) runs while
# the model is synthesized, and the benchmark gets what is left before
# DEADLINE_S (it is interrupted with SIGINT then, which still writes what
# was measured).
#
#   bench/gpu_bench.sh [RUNS [WARMUP]]          (defaults 10 and 2)
#
# Environment (defaults in brackets):
#   APR         the apr to measure                         [dist/apr/apr]
#   LLAMA_SRC   llama.cpp's trimmed source tarball         [third_party/llama-src.tar.xz]
#   LLAMA_PEER  the script that builds it (llama_peer.sh)  [third_party/llama_peer.sh]
#   LLAMA_BIN   a folder with llama-server already built: no build
#   MODEL       the 32B file, synthesized if missing       [/tmp/c32.gguf]
#   OUT         where the results go                       [$OUT, else ./bench-out]
#   DEADLINE_S  seconds the whole script may take          [540]
# Writes to OUT: bench-DATE-CARD.json, .csv, .svg (bench/results/ keeps
# them), table.txt, and the servers' logs when something failed; prints
# the table last.
set -u
cd "$(dirname "$0")/.." || exit 1
t_start=$(date +%s)
RUNS=${1:-10}
WARMUP=${2:-2}
APR=${APR:-dist/apr/apr}
LLAMA_SRC=${LLAMA_SRC:-third_party/llama-src.tar.xz}
LLAMA_PEER=${LLAMA_PEER:-third_party/llama_peer.sh}
MODEL=${MODEL:-/tmp/c32.gguf}
OUT=${OUT:-bench-out}
DEADLINE_S=${DEADLINE_S:-540}
mkdir -p "$OUT"
log() { echo "[gpu_bench $(( $(date +%s) - t_start ))s] $*" >&2; }

[ -x "$APR" ] || { echo "gpu_bench: no apr at $APR (make bundle, or set APR)"; exit 1; }
"$APR" version
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true

# 1. llama-server for CUDA, in the background.
build_pid=""
if [ -z "${LLAMA_BIN:-}" ]; then
    [ -f "$LLAMA_SRC" ] || { echo "gpu_bench: no llama.cpp source at $LLAMA_SRC (set LLAMA_SRC or LLAMA_BIN)"; exit 1; }
    [ -f "$LLAMA_PEER" ] || { echo "gpu_bench: no llama_peer.sh at $LLAMA_PEER (set LLAMA_PEER)"; exit 1; }
    log "building llama-server (CUDA, sm_90) from $LLAMA_SRC"
    bash "$LLAMA_PEER" build "$LLAMA_SRC" /tmp/llama-cuda cuda >/tmp/llama-build.out 2>&1 &
    build_pid=$!
fi

# 2. The 32B, meanwhile (the real Qwen2 vocabulary, so prompts count as on
# the real file), made to emit text (bench/text_only_model.lua: random
# weights otherwise emit invalid UTF-8 now and then, which llama-server
# answers with HTTP 500).
if [ ! -f "$MODEL" ]; then
    log "synthesizing $MODEL"
    "$APR" synth --preset qwen2.5-coder-32b --layout q4_k_m \
        --vocab tests/fixtures/tokenizer/tokenizer.json.zst "$MODEL" || { echo "gpu_bench: synth failed"; exit 1; }
    "$APR" run bench/text_only_model.lua "$MODEL" || { echo "gpu_bench: text_only_model failed"; exit 1; }
else
    log "using $MODEL as it is (bench/text_only_model.lua runs only on a model synthesized here)"
fi
ls -la "$MODEL"

if [ -n "$build_pid" ]; then
    if ! wait "$build_pid"; then
        echo "gpu_bench: the llama.cpp build failed:"; tail -30 /tmp/llama-build.out
        cp /tmp/llama-build.out "$OUT/llama-build.log"
        exit 1
    fi
    LLAMA_BIN=$(tail -1 /tmp/llama-build.out)
    log "llama-server built: $LLAMA_BIN"
fi

# 3. The benchmark, with what time is left (SIGINT at the deadline: the
# report still holds every run finished by then).
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-' | sed 's/-$//')
stem="$OUT/bench-$(date -u +%Y-%m-%d)-${card:-gpu}"
left=$(( DEADLINE_S - ( $(date +%s) - t_start ) - 10 ))
[ "$left" -gt 60 ] || { echo "gpu_bench: only ${left}s left for the benchmark"; exit 1; }
log "apr bench: $RUNS runs + $WARMUP warm-up at concurrency 1 and 16, ${left}s left"
mkdir -p /tmp/gpu-bench-work
TMPDIR=/tmp/gpu-bench-work timeout -s INT -k 20 "$left" "$APR" bench "$MODEL" --gpu \
    --baseline "llama-cpp=$LLAMA_BIN" --baseline ollama --api completions \
    --concurrency 1,16 --parallel 16 --ctx 32768 --max-tokens 128 --runs "$RUNS" --warmup "$WARMUP" \
    --start-timeout 240 -o "$stem.json" --csv "$stem.csv" --svg "$stem.svg" >"$OUT/table.txt"
rc=$?
for f in /tmp/gpu-bench-work/apr-bench-*/*.log; do [ -f "$f" ] && cp "$f" "$OUT/$(basename "$f")"; done
log "apr bench exited $rc"
cat "$OUT/table.txt"
exit $rc
