#!/usr/bin/env python3
"""quant_oracle.py — the gguf package's converters, as an oracle for quant.c.

usage: quant_oracle.py DIR

For each DIR/deq_TYPE.bin (whole blocks of ggml type TYPE) it writes
DIR/deq_TYPE.out: the float32 values gguf.quants.dequantize gives. For each
DIR/q_TYPE.f32 (float32 values) it writes DIR/q_TYPE.out: the bytes
gguf.quants.quantize gives. Run by tests/runtime/core/quant_oracle_test.c
with the interpreter of the venv that `make deps` creates.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf import quants


def main(folder):
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        stem, ext = os.path.splitext(name)
        if name.startswith("deq_") and ext == ".bin":
            qtype = GGMLQuantizationType[stem[4:]]
            data = np.fromfile(path, dtype=np.uint8)
            with np.errstate(all="ignore"):  # random blocks may hold NaN/Inf
                out = quants.dequantize(data, qtype)
            out.astype("<f4").tofile(os.path.join(folder, stem + ".out"))
        elif name.startswith("q_") and ext == ".f32":
            qtype = GGMLQuantizationType[stem[2:]]
            data = np.fromfile(path, dtype="<f4")
            out = quants.quantize(data, qtype)
            with open(os.path.join(folder, stem + ".out"), "wb") as f:
                f.write(out.tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
