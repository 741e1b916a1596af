#!/usr/bin/env python3
"""gen.py - writes the malformed GGUF corpus into tests/fixtures/malformed/.

Two kinds of broken file, each one small valid image with one thing broken:

- file: the GGUF structure is broken (truncated at a section boundary, an
  impossible count, a length past the end, a bad type, a misplaced tensor
  ...): `apr info`, `apr verify` and `apr pass` all fail with the reader's
  one-line error.
- model: the file is sound GGUF but no model apr can run (a token id outside
  the vocabulary, a missing key, a NaN epsilon, a type the products cannot
  take ...): `apr info` describes it, and `apr verify` and `apr pass` both
  fail with the loader's one-line error, since verify runs the loader's own
  checks (issue 16).

ok-model.gguf is the model the second kind breaks, whole: every command
succeeds on it, so each broken copy fails for its one change.

EXPECTED lists, per file, its kind and a fragment of the one-line error;
tests/malformed/run.sh and tests/lua/malformed_spec.lua check both.
Deterministic and standard library only: rerun it after changing a case, and
commit the output (a few hundred KB).

usage: tests/malformed/gen.py [OUT_DIR [SEED_DIR]]
(defaults: tests/fixtures/malformed and tests/fuzz/seeds/gguf; with OUT_DIR
alone only the malformed files are written)
"""
import os
import struct
import sys

# GGUF metadata value types and the ggml tensor types used here.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
T_F32, T_F16, T_Q8_0, T_Q4_K, T_IQ2_XXS, T_BF16 = 0, 1, 8, 12, 16, 30
ALIGN = 32


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b)) + b


class Image:
    """A GGUF file assembled from parts, remembering where each part starts
    so a case can cut or patch the bytes at a named place."""

    def __init__(self, version=3, kvs=None, tensors=None, n_tensors=None, n_kv=None, align=ALIGN):
        self.marks = {}
        out = bytearray()

        def mark(name):
            self.marks[name] = len(out)

        mark("magic")
        out += b"GGUF"
        mark("version")
        out += u32(version)
        kvs = default_kvs() if kvs is None else kvs
        tensors = default_tensors() if tensors is None else tensors
        mark("n_tensors")
        out += u64(len(tensors) if n_tensors is None else n_tensors)
        mark("n_kv")
        out += u64(len(kvs) if n_kv is None else n_kv)
        for key, vtype, payload in kvs:
            mark(key)
            out += gstr(key)
            mark(key + ".type")
            out += u32(vtype)
            mark(key + ".value")
            out += payload
        for name, dims, ttype, offset in tensors:
            mark(name)
            out += gstr(name)
            mark(name + ".n_dims")
            out += u32(len(dims))
            mark(name + ".dims")
            for d in dims:
                out += u64(d)
            mark(name + ".type")
            out += u32(ttype)
            mark(name + ".offset")
            out += u64(offset)
        mark("header_end")
        while len(out) % align:
            out += b"\0"
        mark("data")
        out += bytes((i * 37 + 5) & 0xFF for i in range(data_size(tensors, align)))
        mark("end")
        self.bytes = bytes(out)

    def cut(self, mark, extra=0):
        return self.bytes[: self.marks[mark] + extra]

    def patch(self, mark, value, extra=0):
        at = self.marks[mark] + extra
        return self.bytes[:at] + value + self.bytes[at + len(value):]


def nbytes(dims, ttype):
    n = 1
    for d in dims:
        n *= d
    return {T_F32: n * 4, T_Q8_0: n // 32 * 34, T_Q4_K: n // 256 * 144}.get(ttype, 0)


def data_size(tensors, align):
    end = 0
    for name, dims, ttype, offset in tensors:
        if offset < 2**40:
            end = max(end, offset + nbytes(dims, ttype))
    return min((end + align - 1) // align * align, 4096)


def str_array(items):
    return u32(STR) + u64(len(items)) + b"".join(gstr(s) for s in items)


def default_kvs():
    # Strings last: a cut inside them leaves enough bytes that the cut, not
    # the key count, is what the reader reports.
    return [
        ("qwen2.block_count", U32, u32(1)),
        ("tokenizer.ggml.token_type", ARR, u32(I32) + u64(3) + u32(1) + u32(1) + u32(3)),
        ("tokenizer.ggml.tokens", ARR, str_array(["a", "b", "<|endoftext|>"])),
        ("test.nested", ARR, u32(ARR) + u64(2) + str_array(["x"]) + u32(U8) + u64(2) + b"\1\2"),
        ("general.architecture", STR, gstr("qwen2")),
        ("general.name", STR, gstr("malformed")),
    ]


def default_tensors():
    # F32 [8] at 0 (32 bytes), Q8_0 [32, 2] at 32 (68 bytes).
    return [("output_norm.weight", [8], T_F32, 0), ("token_embd.weight", [32, 2], T_Q8_0, 32)]


def kvs_with(extra, replace=None):
    kvs = default_kvs()
    if replace is not None:
        kvs[replace[0]] = replace[1]
    return kvs + extra


def nested(depth):
    """An array nested `depth` deep, holding one u8 at the bottom."""
    payload = u32(U8) + u64(1) + b"\7"
    for _ in range(depth - 1):
        payload = u32(ARR) + u64(1) + payload
    return payload


def cases():
    base = Image()
    c = {}
    # Truncation at every section boundary, and inside the variable ones.
    c["empty"] = (b"", "empty file")
    c["trunc-magic"] = (base.cut("magic", 2), "ends inside the magic")
    c["trunc-version"] = (base.cut("version", 2), "ends inside the version")
    c["trunc-tensor-count"] = (base.cut("n_tensors", 3), "ends inside the tensor count")
    c["trunc-kv-count"] = (base.cut("n_kv", 7), "ends inside the key/value count")
    c["trunc-before-kvs"] = (base.cut("qwen2.block_count"), "key/value count 6 cannot fit")
    c["trunc-in-key"] = (base.cut("general.architecture", 12), "key 4: key of 20 bytes runs past the end")
    c["trunc-value-type"] = (base.cut("general.name.type", 2), "key 'general.name': the file ends inside the value type")
    c["trunc-in-value"] = (base.cut("general.name.value", 4), "key 'general.name': the file ends inside the string")
    c["trunc-in-string"] = (base.cut("general.name.value", 10), "string of 9 bytes runs past the end")
    c["trunc-in-array"] = (base.cut("tokenizer.ggml.tokens.value", 20), "key 'tokenizer.ggml.tokens'")
    c["trunc-in-nested-array"] = (base.cut("test.nested.value", 30), "key 'test.nested'")
    c["trunc-before-tensor-infos"] = (base.cut("output_norm.weight"), "tensor count 2 cannot fit")
    c["trunc-in-tensor-name"] = (base.cut("token_embd.weight", 16), "tensor 1: tensor name of 17 bytes runs past")
    c["trunc-in-tensor-dims"] = (base.cut("token_embd.weight.dims", 4),
                                 "tensor 'token_embd.weight': the file ends inside the dimensions")
    c["trunc-in-tensor-offset"] = (base.cut("token_embd.weight.offset", 5), "ends inside the data offset")
    c["trunc-in-padding"] = (base.cut("header_end", 3), "past end of file")
    c["trunc-in-data"] = (base.cut("end", -40), "tensor 'token_embd.weight' data")
    c["trunc-last-byte"] = (base.cut("data", 99), "tensor 'token_embd.weight' data [512, 580) past end of file (579 bytes)")
    # Not GGUF, or a version apr does not read.
    c["bad-magic"] = (base.patch("magic", b"GGML"), "not a GGUF file (magic 'GGML'")
    c["bad-magic-text"] = (b"hello, world\nthis is text\n", "not a GGUF file")
    c["version-1"] = (base.patch("version", u32(1)), "GGUF version 1 is not supported")
    c["version-4"] = (base.patch("version", u32(4)), "GGUF version 4 is not supported")
    c["version-big-endian"] = (base.patch("version", struct.pack(">I", 3)), "big-endian")
    # Impossible counts and lengths.
    c["tensors-2^63"] = (base.patch("n_tensors", u64(2**63)), "tensor count 9223372036854775808 cannot fit")
    c["kvs-2^63"] = (base.patch("n_kv", u64(2**63)), "key/value count 9223372036854775808 cannot fit")
    c["kvs-2^64-1"] = (base.patch("n_kv", u64(2**64 - 1)), "cannot fit")
    c["key-length-2^64-1"] = (base.patch("general.architecture", u64(2**64 - 1)), "key of 18446744073709551615 bytes")
    c["key-empty"] = (Image(kvs=kvs_with([("", U8, b"\1")])).bytes, "empty key")
    c["key-with-nul"] = (Image(kvs=kvs_with([("a\0b", U8, b"\1")])).bytes, "key contains a NUL byte")
    c["string-length-past-end"] = (base.patch("general.name.value", u64(2**64 - 1)),
                                   "string of 18446744073709551615 bytes runs past the end")
    c["string-length-file-size"] = (base.patch("general.name.value", u64(len(base.bytes))), "runs past the end of the file")
    c["array-length-past-end"] = (base.patch("tokenizer.ggml.token_type.value", u64(2**62), 4), "array of 4611686018427387904 int32")
    c["string-array-length-past-end"] = (base.patch("tokenizer.ggml.tokens.value", u64(2**40), 4), "array of 1099511627776 string")
    c["nested-array-too-deep"] = (Image(kvs=kvs_with([("deep", ARR, nested(40))])).bytes, "nested more than 16 deep")
    c["nested-array-huge"] = (Image(kvs=kvs_with([("huge", ARR, u32(ARR) + u64(1) + u32(ARR) + u64(2**60))])).bytes,
                              "array of 1152921504606846976 array elements")
    # Unknown types.
    c["kv-type-unknown"] = (base.patch("general.architecture.type", u32(13)), "unknown value type 13")
    c["kv-type-huge"] = (base.patch("general.architecture.type", u32(2**31)), "unknown value type 2147483648")
    c["array-elem-type-unknown"] = (base.patch("tokenizer.ggml.token_type.value", u32(99)), "unknown array element type 99")
    c["bool-not-0-or-1"] = (Image(kvs=kvs_with([("flag", BOOL, b"\2")])).bytes, "boolean value 2 is not 0 or 1")
    c["tensor-type-unknown"] = (base.patch("output_norm.weight.type", u32(4)), "unknown tensor type 4")
    c["tensor-type-huge"] = (base.patch("output_norm.weight.type", u32(0xFFFFFFFF)), "unknown tensor type 4294967295")
    # Tensor shapes.
    c["dims-zero"] = (base.patch("output_norm.weight.n_dims", u32(0)), "has 0 dimensions")
    c["dims-five"] = (base.patch("output_norm.weight.n_dims", u32(5)), "has 5 dimensions")
    c["dim-beyond-int64"] = (base.patch("token_embd.weight.dims", u64(2**63), 8), "dimension 1 is 9223372036854775808")
    over = [("w", [2**32, 2**32], T_F32, 0)]
    c["dims-product-overflow"] = (Image(tensors=over).bytes, "more than 2^63-1 elements")
    c["bytes-overflow"] = (Image(tensors=[("w", [2**31, 2**31], T_F32, 0)]).bytes, "do not fit in 2^64 bytes")
    c["row-not-whole-blocks"] = (Image(tensors=[("w", [32, 2], T_Q4_K, 0)]).bytes,
                                 "not a whole number of Q4_K blocks")
    c["tensor-name-empty"] = (Image(tensors=[("", [8], T_F32, 0)]).bytes, "empty tensor name")
    # Tensor placement.
    c["tensor-offset-past-end"] = (base.patch("token_embd.weight.offset", u64(4096)), "data [4576, 4644) past end of file (608 bytes)")
    c["tensor-offset-2^64"] = (base.patch("token_embd.weight.offset", u64(2**64 - 32)), "lies beyond 2^64")
    c["tensor-offset-misaligned"] = (base.patch("token_embd.weight.offset", u64(36)), "not a multiple of the alignment (32)")
    c["tensor-overlap"] = (Image(tensors=[("a", [16], T_F32, 0), ("b", [8], T_F32, 32)]).bytes, "overlap")
    c["duplicate-tensor"] = (Image(tensors=[("a", [8], T_F32, 0), ("a", [8], T_F32, 32)]).bytes,
                             "duplicate tensor name")
    # Metadata rules.
    c["duplicate-key"] = (Image(kvs=kvs_with([("general.name", STR, gstr("again"))])).bytes, "duplicate key")
    c["alignment-not-power-of-two"] = (Image(kvs=kvs_with([("general.alignment", U32, u32(24))])).bytes,
                                       "24 is not a power of two")
    c["alignment-zero"] = (Image(kvs=kvs_with([("general.alignment", U32, u32(0))])).bytes,
                           "0 is not a power of two")
    c["alignment-wrong-type"] = (Image(kvs=kvs_with([("general.alignment", STR, gstr("32"))])).bytes,
                                 "must be a uint32, not string")
    return c


# ---------------------------------------------------------------- models

def f32(v):
    return struct.pack("<f", v)


def i32_array(items):
    return u32(I32) + u64(len(items)) + b"".join(u32(v) for v in items)


# A whole Qwen2 model, as small as one can be: one block, n_embd 16 (two
# heads of 8, one KV head), n_ff 32, eight tokens. Matrices F16, vectors F32.
TOKENS = ["h", "i", "hi", "\u0120", "!", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TYPES = [1, 1, 1, 1, 1, 3, 3, 3]


def model_kvs(n_ff=32):
    return [
        ("general.architecture", STR, gstr("qwen2")),
        ("general.name", STR, gstr("malformed-model")),
        ("qwen2.block_count", U32, u32(1)),
        ("qwen2.context_length", U32, u32(64)),
        ("qwen2.embedding_length", U32, u32(16)),
        ("qwen2.feed_forward_length", U32, u32(n_ff)),
        ("qwen2.attention.head_count", U32, u32(2)),
        ("qwen2.attention.head_count_kv", U32, u32(1)),
        ("qwen2.rope.freq_base", F32, f32(10000.0)),
        ("qwen2.attention.layer_norm_rms_epsilon", F32, f32(1e-6)),
        ("tokenizer.ggml.model", STR, gstr("gpt2")),
        ("tokenizer.ggml.pre", STR, gstr("qwen2")),
        ("tokenizer.ggml.tokens", ARR, str_array(TOKENS)),
        ("tokenizer.ggml.token_type", ARR, i32_array(TYPES)),
        ("tokenizer.ggml.merges", ARR, str_array(["h i"])),
        ("tokenizer.ggml.bos_token_id", U32, u32(5)),
        ("tokenizer.ggml.eos_token_id", U32, u32(7)),
    ]


def model_tensors(n_ff=32, n_vocab=8):
    """(name, dims, type) in file order."""
    e, q, kv = 16, 16, 8
    mat, vec = T_F16, T_F32
    return [
        ("token_embd.weight", [e, n_vocab], mat),
        ("blk.0.attn_norm.weight", [e], vec),
        ("blk.0.attn_q.weight", [e, q], mat),
        ("blk.0.attn_q.bias", [q], vec),
        ("blk.0.attn_k.weight", [e, kv], mat),
        ("blk.0.attn_k.bias", [kv], vec),
        ("blk.0.attn_v.weight", [e, kv], mat),
        ("blk.0.attn_v.bias", [kv], vec),
        ("blk.0.attn_output.weight", [q, e], mat),
        ("blk.0.ffn_norm.weight", [e], vec),
        ("blk.0.ffn_gate.weight", [e, n_ff], mat),
        ("blk.0.ffn_up.weight", [e, n_ff], mat),
        ("blk.0.ffn_down.weight", [n_ff, e], mat),
        ("output_norm.weight", [e], vec),
        ("output.weight", [e, n_vocab], mat),
    ]


def tensor_bytes(name, dims, ttype, poke_nan=False):
    """Deterministic finite data: norms near 1, the rest small."""
    n = 1
    for d in dims:
        n *= d
    seed = sum(name.encode())
    vals = []
    for k in range(n):
        r = ((k * 2654435761 + seed * 40503) % 2003) / 2003.0 - 0.5
        vals.append(1.0 + 0.2 * r if name.endswith("norm.weight") else 0.25 * r)
    if poke_nan:
        vals[3] = float("nan")
    if ttype == T_F32:
        return b"".join(struct.pack("<f", v) for v in vals)
    if ttype == T_F16:
        return b"".join(struct.pack("<e", v) for v in vals)
    if ttype == T_BF16:
        return b"".join(struct.pack("<f", v)[2:] for v in vals)
    if ttype == T_IQ2_XXS:   # 256 elements in 66 bytes; any bytes do (apr never decodes it)
        return bytes((k * 37 + 5) & 0xFF for k in range(n // 256 * 66))
    raise ValueError(ttype)


def model_image(kvs=None, tensors=None, nan_in=None, n_ff=32):
    """A whole model image: kvs and (name, dims, type) tensors, data laid
    out at aligned offsets, filled by tensor_bytes."""
    kvs = model_kvs(n_ff) if kvs is None else kvs
    tensors = model_tensors(n_ff) if tensors is None else tensors
    out = bytearray(b"GGUF" + u32(3) + u64(len(tensors)) + u64(len(kvs)))
    for key, vtype, payload in kvs:
        out += gstr(key) + u32(vtype) + payload
    data = bytearray()
    for name, dims, ttype in tensors:
        while len(data) % ALIGN:
            data += b"\0"
        out += gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ttype) + u64(len(data))
        data += tensor_bytes(name, dims, ttype, poke_nan=(name == nan_in))
    while len(out) % ALIGN:
        out += b"\0"
    return bytes(out + data)


def kvs_set(key, vtype, payload, n_ff=32):
    kvs = model_kvs(n_ff)
    for i, (k, _, _) in enumerate(kvs):
        if k == key:
            kvs[i] = (key, vtype, payload)
            return kvs
    return kvs + [(key, vtype, payload)]


def kvs_without(key):
    return [kv for kv in model_kvs() if kv[0] != key]


def tensors_with(name, dims=None, ttype=None, n_ff=32, n_vocab=8):
    out = []
    for n, d, t in model_tensors(n_ff, n_vocab):
        if n == name:
            if dims is None and ttype is None:
                continue  # dropped
            d, t = dims or d, t if ttype is None else ttype
        out.append((n, d, t))
    return out


def model_cases():
    """Sound GGUF that the loader refuses: (bytes, fragment of its error)."""
    c = {}
    E = "tokenizer.ggml.eos_token_id"
    # The tokenizer.
    c["model-eos-outside-vocab"] = (model_image(kvs_set(E, U32, u32(99))),
                                    "tokenizer: tokenizer.ggml.eos_token_id = 99 is outside the vocabulary of 8 tokens")
    c["model-bos-outside-vocab"] = (model_image(kvs_set("tokenizer.ggml.bos_token_id", U32, u32(8))),
                                    "tokenizer.ggml.bos_token_id = 8 is outside the vocabulary of 8 tokens")
    c["model-no-tokens"] = (model_image(kvs_without("tokenizer.ggml.tokens")),
                            "tokenizer: the GGUF metadata lacks tokenizer.ggml.tokens")
    c["model-no-merges"] = (model_image(kvs_without("tokenizer.ggml.merges")),
                            "tokenizer: the GGUF metadata lacks tokenizer.ggml.merges")
    c["model-token-type-short"] = (model_image(kvs_set("tokenizer.ggml.token_type", ARR, i32_array(TYPES[:7]))),
                                   "tokenizer.ggml.token_type has 7 entries for 8 tokens")
    c["model-tokenizer-not-bpe"] = (model_image(kvs_set("tokenizer.ggml.model", STR, gstr("llama"))),
                                    'tokenizer.ggml.model is "llama"')
    c["model-pretokenizer-unknown"] = (model_image(kvs_set("tokenizer.ggml.pre", STR, gstr("nonesuch"))),
                                       'pre-tokenizer "nonesuch" (tokenizer.ggml.pre) is not supported')
    # The hyperparameters.
    c["model-rms-eps-nan"] = (model_image(kvs_set("qwen2.attention.layer_norm_rms_epsilon", F32, f32(float("nan")))),
                              "qwen2.attention.layer_norm_rms_epsilon = nan must be a finite positive number")
    c["model-rope-base-inf"] = (model_image(kvs_set("qwen2.rope.freq_base", F32, f32(float("inf")))),
                                "qwen2.rope.freq_base = inf must be a finite positive number")
    c["model-rope-base-negative"] = (model_image(kvs_set("qwen2.rope.freq_base", F32, f32(-10000.0))),
                                     "qwen2.rope.freq_base = -10000 must be a finite positive number")
    c["model-block-count-0"] = (model_image(kvs_set("qwen2.block_count", U32, u32(0))),
                                "qwen2.block_count = 0 is outside [1, 1024]")
    c["model-no-architecture"] = (model_image(kvs_without("general.architecture")),
                                  "metadata key general.architecture is missing")
    c["model-architecture-unknown"] = (model_image(kvs_set("general.architecture", STR, gstr("gemma"))),
                                       'architecture "gemma" is not supported')
    c["model-no-head-count"] = (model_image(kvs_without("qwen2.attention.head_count")),
                                "metadata key qwen2.attention.head_count is missing")
    c["model-head-count-0"] = (model_image(kvs_set("qwen2.attention.head_count", U32, u32(0))),
                               "qwen2.attention.head_count = 0 is outside [1, 1024]")
    c["model-kv-heads-not-dividing"] = (model_image(kvs_set("qwen2.attention.head_count_kv", U32, u32(3))),
                                        "head_count 2 is not a multiple of head_count_kv 3")
    # The tensors.
    c["model-iq2_xxs-matrix"] = (model_image(kvs=model_kvs(256), n_ff=256,
                                             tensors=tensors_with("blk.0.ffn_down.weight", ttype=T_IQ2_XXS, n_ff=256)),
                                 "tensor blk.0.ffn_down.weight is IQ2_XXS, which apr cannot multiply by")
    c["model-bf16-norm"] = (model_image(tensors=tensors_with("output_norm.weight", ttype=T_BF16)),
                            "tensor output_norm.weight is BF16; vectors must be F32")
    c["model-tensor-missing"] = (model_image(tensors=tensors_with("blk.0.attn_k.weight")),
                                 "tensor blk.0.attn_k.weight is missing")
    c["model-tensor-shape"] = (model_image(tensors=tensors_with("blk.0.attn_k.weight", dims=[16, 16])),
                               "tensor blk.0.attn_k.weight has shape [16, 16, 1, 1], expected [16, 8]")
    c["model-norm-nan"] = (model_image(nan_in="blk.0.ffn_norm.weight"),
                           "tensor blk.0.ffn_norm.weight: element 3 is NaN or infinite")
    c["model-vocab-over-embedding"] = (model_image(tensors=[t for t in tensors_with("token_embd.weight", dims=[16, 6])
                                                            if t[0] != "output.weight"]),
                                       "the tokenizer has 8 tokens but token_embd.weight only 6 rows")
    return c


def valid_seeds():
    """Small valid images for the fuzzer to start from."""
    return {
        "valid-base": Image().bytes,
        "valid-v2": Image(version=2).bytes,
        "valid-align64": Image(kvs=kvs_with([("general.alignment", U32, u32(64))]),
                               tensors=[("a", [8], T_F32, 0), ("b", [256], T_Q4_K, 64)], align=64).bytes,
        "valid-no-tensors": Image(tensors=[]).bytes,
        "valid-every-type": Image(kvs=[
            ("u8", U8, b"\1"), ("i8", I8, b"\xff"), ("u16", U16, b"\1\2"), ("i16", I16, b"\1\2"),
            ("u32", U32, u32(7)), ("i32", I32, u32(2**32 - 7)), ("f32", F32, struct.pack("<f", 0.5)),
            ("b", BOOL, b"\1"), ("s", STR, gstr("text")), ("u64", U64, u64(2**64 - 1)),
            ("i64", I64, u64(2**63)), ("f64", F64, struct.pack("<d", 1e300)),
            ("a", ARR, u32(ARR) + u64(2) + str_array(["x", "yz"]) + nested(3)),
            ("bools", ARR, u32(BOOL) + u64(3) + b"\0\1\0"),
        ]).bytes,
    }


def write_dir(out, files):
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old.endswith(".gguf"):
            os.remove(os.path.join(out, old))
    for name, data in files.items():
        with open(os.path.join(out, name + ".gguf"), "wb") as f:
            f.write(data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "..")
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "malformed")
    bad = cases()
    loader = model_cases()
    files = {name: data for name, (data, _) in bad.items()}
    files.update({name: data for name, (data, _) in loader.items()})
    files["ok-model"] = model_image()
    write_dir(out, files)
    with open(os.path.join(out, "EXPECTED"), "w") as f:
        f.write("# FILE<TAB>KIND<TAB>fragment of the one-line error (tests/malformed/gen.py). KIND file: `apr info`,\n"
                "# `verify` and `pass` fail with it; model: `info` succeeds, `verify` and `pass` fail with it;\n"
                "# ok: every command succeeds.\n")
        f.write("ok-model.gguf\tok\t\n")
        for name, (_, expect) in sorted(bad.items()):
            f.write("%s.gguf\tfile\t%s\n" % (name, expect))
        for name, (_, expect) in sorted(loader.items()):
            f.write("%s.gguf\tmodel\t%s\n" % (name, expect))
    if len(sys.argv) > 1 and len(sys.argv) < 3:
        print("%d malformed files in %s" % (len(files), os.path.relpath(out)))
        return
    seeds = dict(valid_seeds())
    seeds.update(files)
    seed_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests", "fuzz", "seeds", "gguf")
    write_dir(seed_dir, seeds)
    print("%d malformed files in %s, %d fuzzer seeds in %s" % (len(files), os.path.relpath(out), len(seeds),
                                                              os.path.relpath(seed_dir)))


if __name__ == "__main__":
    main()
