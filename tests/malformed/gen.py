#!/usr/bin/env python3
"""gen.py - writes the malformed GGUF corpus into tests/fixtures/malformed/.

Each file is one small valid GGUF image with one thing broken: truncated at
a section boundary, an impossible count, a length past the end, a bad type,
a misplaced tensor and so on. EXPECTED lists, per file, a fragment that the
one-line error of `apr info FILE` must contain; tests/malformed/run.sh and
tests/lua/malformed_spec.lua check both. Deterministic and standard library
only: rerun it after changing a case, and commit the output (a few KB).

usage: tests/malformed/gen.py [OUT_DIR [SEED_DIR]]
(defaults: tests/fixtures/malformed and tests/fuzz/seeds/gguf; with OUT_DIR
alone only the malformed files are written)
"""
import os
import struct
import sys

# GGUF metadata value types and the ggml tensor types used here.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
T_F32, T_Q8_0, T_Q4_K = 0, 8, 12
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
    write_dir(out, {name: data for name, (data, _) in bad.items()})
    with open(os.path.join(out, "EXPECTED"), "w") as f:
        f.write("# FILE<TAB>fragment of the one-line error `apr info FILE` must print (tests/malformed/gen.py)\n")
        for name, (_, expect) in sorted(bad.items()):
            f.write("%s.gguf\t%s\n" % (name, expect))
    if len(sys.argv) > 1 and len(sys.argv) < 3:
        print("%d malformed files in %s" % (len(bad), os.path.relpath(out)))
        return
    seeds = dict(valid_seeds())
    seeds.update({name: data for name, (data, _) in bad.items()})
    seed_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests", "fuzz", "seeds", "gguf")
    write_dir(seed_dir, seeds)
    print("%d malformed files in %s, %d fuzzer seeds in %s" % (len(bad), os.path.relpath(out), len(seeds),
                                                              os.path.relpath(seed_dir)))


if __name__ == "__main__":
    main()
