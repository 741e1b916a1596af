-- file_spec.lua — apr.open: metadata, tensors, views, failures.
local h = require "tests.lua.helpers"
local apr = require "apr"

local Q4 = "tests/fixtures/models/tiny-q4_k_m.gguf"

describe("apr.open", function()
    it("reads the header, metadata of every kind and the tensor table", function()
        local f = assert(apr.open(Q4))
        assert.equal("GGUF", f.format)
        assert.equal(3, f.version)
        assert.equal(1499616, f.size)
        local md = f.metadata
        assert.equal("qwen2", md["general.architecture"])
        assert.equal(2, md["qwen2.block_count"])
        assert.equal(1e6, md["qwen2.rope.freq_base"])
        assert.equal(false, md["tokenizer.ggml.add_bos_token"])
        assert.equal(2048, #md["tokenizer.ggml.tokens"])
        assert.equal("<|im_end|>", md["tokenizer.ggml.tokens"][2048])
        assert.equal(1, md["tokenizer.ggml.token_type"][1])
        local v, ty = f:get("tokenizer.ggml.merges")
        assert.equal("array[string]", ty)
        assert.equal(1789, #v)
        assert.is_nil(f:get("no.such.key"))
        local ts = f:tensors()
        assert.equal(27, #ts)
        assert.same({ name = "token_embd.weight", type = "Q4_K", dtype = 12, shape = { 256, 2048 },
                      elements = 256 * 2048, bytes = 294912, offset = 0, file_offset = f.data_offset, file = 1,
                      stored_bytes = 294912, codec = "none" }, ts[1])
        assert.same({ { path = Q4, size = 1499616 } }, f.files)
        assert.equal("Q6_K", ts[3].type)
        for i = 2, #ts do assert.is_true(ts[i].offset >= ts[i - 1].offset + ts[i - 1].bytes) end
    end)

    it("gives tensors as apr.tensor views into the mapping", function()
        local f = assert(apr.open("tests/fixtures/models/tiny-f16.gguf"))
        local t = assert(f:tensor("blk.0.attn_k.weight"))
        assert.same({ 256, 128 }, t:shape())
        local data = f:tensor_data("blk.0.attn_k.weight")
        local bits = require("ffi").cast("const uint16_t *", data)[0]
        assert.is_number(t[1])
        assert.is_true(bits ~= 0)
        local s = t:stats()
        assert.equal(0, s.nan)
        assert.is_true(math.abs(s.mean) < 0.01)
        local none, err = f:tensor("blk.9.attn_k.weight")
        assert.is_nil(none)
        assert.equal("tests/fixtures/models/tiny-f16.gguf: no tensor 'blk.9.attn_k.weight'", err)
        -- close refuses while a view is alive, then works
        assert.has_error(function() f:close() end)
        t = nil
        f:close()
        assert.has_error(function() f:tensors() end)
    end)

    it("returns nil and one message for missing and malformed files", function()
        local f, err = apr.open("tests/fixtures/no-such.gguf")
        assert.is_nil(f)
        assert.equal("tests/fixtures/no-such.gguf: No such file or directory", err)
        f, err = apr.open("tests/fixtures/malformed/version-1.gguf")
        assert.is_nil(f)
        assert.truthy(err:find("GGUF version 1 is not supported", 1, true))
        assert.has_error(function() apr.open(42) end)
    end)

    it("keeps 64-bit integers exact", function()
        local f = assert(apr.open("tests/fuzz/seeds/gguf/valid-every-type.gguf"))
        local md = f.metadata
        assert.equal("cdata", type(md.u64))
        assert.equal(18446744073709551615ULL, md.u64)
        assert.equal(-9223372036854775807LL - 1, md.i64)
        assert.equal(-7, md.i32)
        assert.equal(-1, md.i8)
        assert.equal(0.5, md.f32)
        assert.equal(true, md.b)
        assert.same({ false, true, false }, md.bools)
        assert.same({ { "x", "yz" }, { { { 7 } } } }, md.a)
    end)

    it("copies a file byte for byte", function()
        local dir = h.tmpdir()
        local f = assert(apr.open(Q4))
        assert.is_true(f:copy(dir .. "/copy.gguf"))
        assert.equal(h.read_file(Q4), h.read_file(dir .. "/copy.gguf"))
        assert.has_error(function() f:copy(Q4) end)  -- a caller's mistake raises
        local ok, err = f:copy("/nonexistent/dir/x.gguf")
        assert.is_nil(ok)
        assert.equal("/nonexistent/dir/x.gguf: No such file or directory", err)
        h.rmtree(dir)
    end)
end)
