-- gen_apr.lua — writes the malformed APR corpus into tests/fixtures/malformed-apr/.
--
-- Each file is one small valid APR v2 file (docs/apr-format.md) with one thing
-- broken: truncated, a flipped byte in each region (header, metadata, data,
-- gaps, index, trailer), an absurd size or count, a chunk outside the data or
-- overlapping another, a corrupt compressed stream. Where a case must get past
-- the checksums to reach the check it is about, the generator recomputes them
-- ("resealed"), so the corpus reaches every rule the reader checks. EXPECTED
-- lists, per file, a fragment that the one-line error of
-- `apr convert FILE --output OUT.gguf` must contain; tests/malformed/run.sh
-- (under ASan in `make test-asan`) and tests/lua/malformed_apr_spec.lua check
-- that. Deterministic: rerun it after changing a case and commit the output.
--
--   ./apr run tests/malformed/gen_apr.lua [OUT_DIR [SEED_DIR]]
--   (defaults tests/fixtures/malformed-apr and tests/fuzz/seeds/apr; with
--   OUT_DIR alone only the malformed files are written)
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local out_dir = arg[1] or "tests/fixtures/malformed-apr"
local seed_dir = arg[2] or (arg[1] == nil and "tests/fuzz/seeds/apr" or nil)

local tmp = os.tmpname()

-- A small GGUF: F32 [4000] (16000 bytes of a compressible ramp: four chunks
-- of 4096 bytes, the last shorter), Q8_0 [64] (random bytes: stored as is,
-- codec none) and F16 [512].
local function write_gguf(path)
    local box = ffi.new("apr_gguf_writer *[1]")
    core.check(C.apr_gguf_writer_new(box))
    local w = ffi.gc(box[0], C.apr_gguf_writer_free)
    core.check(C.apr_gguf_writer_add_str(w, "general.architecture", "qwen2", 5))
    core.check(C.apr_gguf_writer_add_str(w, "general.name", "malformed-apr", 13))
    core.check(C.apr_gguf_writer_add_int(w, "qwen2.block_count", C.APR_GGUF_UINT32, 1))
    local tensors = {
        { "ramp.weight", C.APR_F32, { 4000 } },
        { "noise.weight", C.APR_Q8_0, { 64 } },
        { "half.weight", C.APR_F16, { 512 } },
    }
    for _, t in ipairs(tensors) do
        core.check(C.apr_gguf_writer_add_tensor(w, t[1], t[2], #t[3], ffi.new("int64_t[4]", t[3])))
    end
    core.check(C.apr_gguf_writer_begin(w, path))
    -- ramp: floats i / 64 (repetitive bytes); noise: an LCG; half: f16 ones
    local ramp = ffi.new("float[4000]")
    for i = 0, 3999 do ramp[i] = math.floor(i / 64) end
    core.check(C.apr_gguf_writer_write(w, 0, 0, ramp, 16000))
    local noise = ffi.new("uint8_t[68]")
    local x = 12345
    for i = 0, 67 do x = (x * 1103515245 + 12345) % 2147483648; noise[i] = math.floor(x / 65536) % 256 end
    noise[0], noise[1] = 0x00, 0x3c  -- a finite scale (f16 1.0)
    noise[34], noise[35] = 0x00, 0x3c
    core.check(C.apr_gguf_writer_write(w, 1, 0, noise, 68))
    local half = ffi.new("uint16_t[512]")
    for i = 0, 511 do half[i] = 0x3c00 end
    core.check(C.apr_gguf_writer_write(w, 2, 0, half, 1024))
    core.check(C.apr_gguf_writer_finish(w))
end

-- The APR file of that GGUF with the given codec, as a byte string.
local function write_apr(codec)
    write_gguf(tmp .. ".gguf")
    local g = ffi.new("apr_gguf *[1]")
    core.check(C.apr_gguf_open(tmp .. ".gguf", g))
    local p = ffi.new("apr_aprf_write_params")
    C.apr_aprf_write_params_default(p)
    p.codec = codec
    p.chunk_bytes = 4096
    p.threads = 1
    local wb = ffi.new("apr_aprf_writer *[1]")
    core.check(C.apr_aprf_writer_new(g[0], tmp .. ".apr", p, wb))
    local pr = ffi.new("apr_aprf_progress")
    while pr.finished == 0 do core.check(C.apr_aprf_writer_step(wb[0], pr)) end
    core.check(C.apr_aprf_writer_finish(wb[0]))
    C.apr_aprf_writer_free(wb[0])
    C.apr_gguf_close(g[0])
    local f = assert(io.open(tmp .. ".apr", "rb"))
    local bytes = f:read("*a")
    f:close()
    os.remove(tmp .. ".apr")
    os.remove(tmp .. ".gguf")
    return bytes
end

-- ---------------------------------------------------------------- images

-- A mutable copy of an APR file with its layout read out.
local Image = {}
Image.__index = Image

local function image(bytes)
    local n = #bytes
    local b = ffi.new("uint8_t[?]", n)
    ffi.copy(b, bytes, n)
    local self = setmetatable({ b = b, n = n }, Image)
    self.trailer = n - 144
    self.index = self:u64(self.trailer + 0)
    self.index_size = self:u64(self.trailer + 8)
    self.gaps = self:u64(self.trailer + 24)
    self.meta_size = self:u64(24)
    self.n_tensors = self:u64(48)
    self.chunk_recs = self.index + 96 * self.n_tensors
    return self
end

function Image:u64(at) return tonumber(ffi.cast("uint64_t *", self.b + at)[0]) end
function Image:u32(at) return tonumber(ffi.cast("uint32_t *", self.b + at)[0]) end
function Image:set64(at, v) ffi.cast("uint64_t *", self.b + at)[0] = v end
function Image:set32(at, v) ffi.cast("uint32_t *", self.b + at)[0] = v end
function Image:set8(at, v) self.b[at] = v end
function Image:flip(at) self.b[at] = bit.bxor(self.b[at], 0x5a) end

-- Offsets of tensor record i and of chunk record c (0-based, global).
function Image:rec(i) return self.index + 96 * i end
function Image:chunk(c) return self.chunk_recs + 24 * c end

-- Recomputes every checksum after an edit: header, metadata, gaps, index, trailer.
function Image:reseal()
    local b = self.b
    self:set64(56, C.apr_aprf_checksum(b + 128, self.meta_size))
    self:set64(120, C.apr_aprf_checksum(b, 120))
    local gaps_size = self:u64(self.trailer + 32)
    local gaps_at = self:u64(self.trailer + 24)
    local ix, ixn = self:u64(self.trailer + 0), self:u64(self.trailer + 8)
    if gaps_at + gaps_size <= self.n then self:set64(self.trailer + 48, C.apr_aprf_checksum(b + gaps_at, gaps_size)) end
    if ix + ixn <= self.n then self:set64(self.trailer + 40, C.apr_aprf_checksum(b + ix, ixn)) end
    self:set64(self.trailer + 128, C.apr_aprf_checksum(b + self.trailer, 128))
    return self
end

function Image:bytes(upto) return ffi.string(self.b, upto or self.n) end

-- ---------------------------------------------------------------- cases

local zstd = write_apr(C.APR_CODEC_ZSTD)
local lz4 = write_apr(C.APR_CODEC_LZ4)
local plain = write_apr(C.APR_CODEC_NONE)

-- Tensor records are in the GGUF's order: 0 ramp (zstd, 4 chunks), 1 noise
-- (codec none: it does not compress), 2 half.
local function base() return image(zstd) end
local RAMP, NOISE, HALF = 0, 1, 2

local cases = {}
local function case(name, fragment, bytes) cases[#cases + 1] = { name = name, fragment = fragment, bytes = bytes } end

-- truncations
case("empty.apr", "empty file", "")
case("magic-only.apr", "truncated", "APRM")
case("cut-in-header.apr", "truncated", zstd:sub(1, 100))
case("cut-in-metadata.apr", "no trailer", zstd:sub(1, 1000))
case("cut-in-data.apr", "no trailer", zstd:sub(1, 4096 + 50))
case("cut-in-index.apr", "no trailer", zstd:sub(1, #zstd - 200))
case("cut-last-byte.apr", "no trailer", zstd:sub(1, #zstd - 1))
case("cut-lz4.apr", "no trailer", lz4:sub(1, #lz4 - 150))

-- header
local i = base(); i:set32(4, 3); case("version-3.apr", "APR version 3 is not supported", i:reseal():bytes())
i = base(); i:set32(8, 64); case("header-size.apr", "header size 64", i:reseal():bytes())
i = base(); i:flip(70); case("header-flipped.apr", "header checksum mismatch", i:bytes())
i = base(); i:set32(12, 3); case("header-flags.apr", "unknown header flags 0x3", i:reseal():bytes())
i = base(); i:set32(12, 0); case("header-no-meta.apr", "no GGUF metadata", i:reseal():bytes())
i = base(); i:set8(80, 1); case("header-reserved.apr", "reserved header byte 80", i:reseal():bytes())
i = base(); i:set64(24, 0x4000000000000000ULL); case("meta-size-absurd.apr", "runs past the end of the file", i:reseal():bytes())
i = base(); i:set64(32, i:u64(32) + 8); case("data-offset-unaligned.apr", "is not a multiple of 4096", i:reseal():bytes())
i = base(); i:set64(48, 5); case("tensor-count-mismatch.apr", "header counts 5 tensors", i:reseal():bytes())

-- metadata (the kept GGUF header)
i = base(); i:flip(128 + 60); case("meta-flipped.apr", "metadata checksum mismatch", i:bytes())
i = base(); i:set8(128, string.byte("X")); case("meta-not-gguf.apr", "not a GGUF file", i:reseal():bytes())
i = base(); i:set64(128 + 16, 0x7fffffffffffffffULL); case("meta-kv-count.apr", "key/value count", i:reseal():bytes())
i = base(); i:set64(40, i.meta_size + 10); case("meta-tensors-past-gguf.apr", "past end of file", i:reseal():bytes())

-- trailer
i = base(); i:flip(i.n - 1); case("trailer-magic.apr", "no trailer", i:bytes())
i = base(); i:flip(i.trailer + 3); case("trailer-flipped.apr", "trailer checksum mismatch", i:bytes())
i = base(); i:set32(i.trailer + 56, 6); case("trailer-flags.apr", "unknown trailer flags 0x6", i:reseal():bytes())
i = base(); i:set64(i.trailer + 0, i.index - 8); case("index-offset.apr", "does not fill", i:reseal():bytes())
i = base(); i:set64(i.trailer + 32, 0x7fffffffffffffffULL); case("gaps-size-absurd.apr", "lie outside", i:reseal():bytes())
i = base(); i:set64(i.trailer + 16, 0x1000000000000000ULL); case("chunk-count-absurd.apr", "do not fit in an index",
    i:reseal():bytes())

-- gaps and index checksums
i = base()
local gaps_size = i:u64(i.trailer + 32)
assert(gaps_size > 0, "the base file has no gaps to flip")
i:flip(i.gaps); case("gaps-flipped.apr", "gaps checksum mismatch", i:bytes())
i = base(); i:flip(i:rec(NOISE) + 60); case("index-flipped.apr", "index checksum mismatch", i:bytes())

-- tensor records
i = base(); i:set64(i:rec(HALF) + 0, 1000000); case("name-outside.apr", "lies outside the", i:reseal():bytes())
i = base(); i:set32(i:rec(HALF) + 8, 0); case("name-empty.apr", "name [", i:reseal():bytes())
i = base(); i:set64(i:rec(HALF) + 0, i:u64(i:rec(NOISE) + 0)); case("name-swapped.apr",
    "is not the GGUF metadata's tensor 2", i:reseal():bytes())
i = base(); i:set32(i:rec(RAMP) + 12, 1); case("dtype-changed.apr", "differ from the GGUF metadata", i:reseal():bytes())
i = base(); i:set64(i:rec(RAMP) + 56, 999); case("nbytes-changed.apr", "differ from the GGUF metadata", i:reseal():bytes())
i = base(); i:set8(i:rec(RAMP) + 20, 7); case("codec-unknown.apr", "unknown codec 7", i:reseal():bytes())
i = base(); i:set8(i:rec(RAMP) + 21, 9); case("filter-unknown.apr", "unknown filter 9", i:reseal():bytes())
i = base(); i:set8(i:rec(RAMP) + 23, 1); case("record-reserved.apr", "reserved record bytes", i:reseal():bytes())
i = base(); i:set32(i:rec(RAMP) + 84, 0); case("chunk-bytes-zero.apr", "chunk size 0", i:reseal():bytes())
i = base(); i:set32(i:rec(RAMP) + 84, 0x80000000); case("chunk-bytes-absurd.apr", "chunk size 2147483648",
    i:reseal():bytes())
i = base(); i:set32(i:rec(RAMP) + 84, 4098); case("chunk-bytes-not-blocks.apr", "not a whole number of 4-byte blocks",
    i:reseal():bytes())
i = base(); i:set32(i:rec(RAMP) + 80, 3); case("chunk-count-wrong.apr", "3 chunks, but 16000 bytes", i:reseal():bytes())
i = base(); i:set64(i:rec(NOISE) + 72, 2); case("first-chunk-wrong.apr", "do not follow", i:reseal():bytes())

-- chunk records: ramp's are 0..3, noise's 4, half's 5
i = base(); i:set32(i:chunk(1) + 12, 4000); case("chunk-raw-size.apr", "raw size 4000, expected 4096", i:reseal():bytes())
i = base(); i:set32(i:chunk(1) + 8, 5000); case("chunk-stored-larger.apr", "exceeds its raw size", i:reseal():bytes())
i = base(); i:set32(i:chunk(1) + 8, 0); case("chunk-stored-zero.apr", "stored size is 0", i:reseal():bytes())
i = base(); i:set64(i:chunk(2) + 0, 0x7ffffffffffff000ULL); case("chunk-outside.apr", "lie outside the data section",
    i:reseal():bytes())
i = base(); i:set64(i:chunk(2) + 0, i:u64(i:chunk(1) + 0)); case("chunk-overlaps-previous.apr",
    "inside the previous chunk's end", i:reseal():bytes())
i = base(); i:set64(i:chunk(4) + 0, i:u64(i:chunk(0) + 0)); case("tensors-overlap.apr", "overlap", i:reseal():bytes())
i = base(); i:set64(i:chunk(4) + 0, i:u64(i:chunk(4) + 0) + 32); case("chunk-unaligned.apr", "not a multiple of 4096",
    i:reseal():bytes())
i = base(); i:set32(i:chunk(4) + 8, 60); case("none-compressed.apr", "in a tensor of codec none", i:reseal():bytes())

-- chunk data: the index is fine, the bytes are not (found when decoded)
i = base(); i:set64(i:chunk(1) + 16, 12345); case("chunk-checksum.apr", "chunk 1 of 4: checksum mismatch",
    i:reseal():bytes())
i = base()
local at = i:u64(i:chunk(2) + 0)
for k = 0, i:u32(i:chunk(2) + 8) - 1 do i:set8(at + k, 0x41) end
case("zstd-garbage.apr", "chunk 2 of 4: zstd data is corrupt", i:bytes())
i = base()
do
    -- chunk 3 (the short last one) replaced by chunk 2's frame, which
    -- decodes to 4096 bytes where 3712 are expected
    local a2, n2 = i:u64(i:chunk(2) + 0), i:u32(i:chunk(2) + 8)
    local a3 = i:u64(i:chunk(3) + 0)
    assert(a3 + n2 <= i.gaps, "no room for the swapped frame")
    ffi.copy(i.b + a3, i.b + a2, n2)
    i:set32(i:chunk(3) + 8, n2)
end
case("zstd-wrong-size.apr", "chunk 3 of 4: zstd data", i:reseal():bytes())
i = base(); i:flip(i:u64(i:chunk(4) + 0) + 10); case("none-flipped.apr", "tensor 'noise.weight' chunk 0 of 1: checksum mismatch",
    i:bytes())
local l = image(lz4)
do
    local a = l:u64(l:chunk(1) + 0)
    for k = 0, l:u32(l:chunk(1) + 8) - 1 do l:set8(a + k, 0xff) end
end
case("lz4-garbage.apr", "chunk 1 of 4: LZ4 data is corrupt", l:bytes())
local p = image(plain)
p:set8(p:rec(RAMP) + 20, 2)  -- claims zstd, but every chunk is stored as is: still valid, so
p:set32(p:chunk(1) + 8, 100)  -- one chunk claims to be 100 compressed bytes
case("stored-raw-as-zstd.apr", "chunk 1 of 4: zstd data is corrupt", p:reseal():bytes())

-- ---------------------------------------------------------------- output

local function write(path, bytes)
    local f = assert(io.open(path, "wb"))
    f:write(bytes)
    f:close()
end

os.execute("mkdir -p '" .. out_dir .. "'")
local expected = { "# file\tfragment of the one-line error of `apr convert FILE --output OUT.gguf` (gen_apr.lua)" }
for _, c in ipairs(cases) do
    write(out_dir .. "/" .. c.name, c.bytes)
    expected[#expected + 1] = c.name .. "\t" .. c.fragment
end
write(out_dir .. "/EXPECTED", table.concat(expected, "\n") .. "\n")
-- The fuzzer starts from the valid files; `make fuzz` adds this corpus.
if seed_dir then
    os.execute("mkdir -p '" .. seed_dir .. "'")
    write(seed_dir .. "/valid-zstd.apr", zstd)
    write(seed_dir .. "/valid-lz4.apr", lz4)
    write(seed_dir .. "/valid-none.apr", plain)
end
os.remove(tmp)
print(string.format("%d malformed APR files in %s", #cases, out_dir))
