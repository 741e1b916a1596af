"""llama_cpp_cpu.py — llama.cpp's side of bench/cpu_decode.lua.

Runs the same measurement as the Lua side through llama-cpp-python (which
builds llama.cpp from source when pip installs it): a prompt of N tokens as
one batch, then G decode steps of one token each, every step producing the
logits of its token, on T threads. Prints one line of JSON per repetition.

    python bench/llama_cpp_cpu.py MODEL.gguf --threads 2 --prompt 512 --gen 64 --reps 1
"""
import argparse
import json
import time

import llama_cpp
from llama_cpp import Llama


def tokens(n, n_vocab, salt):
    # The same ids as the Lua side: an LCG over the first 100K tokens.
    out, x = [], 12345 + salt
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2147483648
        out.append(100 + x % min(n_vocab - 200, 100000))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--kv-type", choices=["f16", "q8_0", "q4_0"], default="f16")
    a = ap.parse_args()
    # ggml's type ids; a quantized V cache needs flash attention in llama.cpp
    kv = {"f16": 1, "q8_0": 8, "q4_0": 2}[a.kv_type]
    extra = {} if a.kv_type == "f16" else {"type_k": kv, "type_v": kv, "flash_attn": True}
    llm = Llama(model_path=a.model, n_threads=a.threads, n_threads_batch=a.threads, n_batch=a.prompt,
                n_ubatch=a.prompt, n_ctx=a.prompt + a.gen + 64, verbose=False, **extra)
    n_vocab = llm.n_vocab()
    for rep in range(a.reps):
        prompt, steps = tokens(a.prompt, n_vocab, rep), tokens(a.gen, n_vocab, 1000 + rep)
        llm.reset()
        llama_cpp.llama_kv_self_clear(llm.ctx) if hasattr(llama_cpp, "llama_kv_self_clear") else None
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        for t in steps:
            llm.eval([t])
        t2 = time.perf_counter()
        print(json.dumps({"prompt_tps": a.prompt / (t1 - t0), "decode_tps": a.gen / (t2 - t1),
                          "version": llama_cpp.__version__}), flush=True)


if __name__ == "__main__":
    main()
