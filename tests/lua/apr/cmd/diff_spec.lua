-- diff_spec.lua — apr diff: a GGUF and its APR are equivalent (exit 0);
-- files that differ in metadata, tokenizer, template, tensor types or data
-- are not (exit 1) and the report names what differs; --json.
local h = require "tests.lua.helpers"
local cjson = require "cjson"

local Q8 = "tests/fixtures/models/tiny-q8_0.gguf"
local Q4 = "tests/fixtures/models/tiny-q4_k_m.gguf"

-- Q8 rewritten with one metadata value changed and one tensor's bytes
-- changed (through the GGUF writer), into dir.
local function altered(dir)
    local apr = require "apr"
    local core = require "apr.core"
    local C, ffi = core.C, core.ffi
    local f = assert(apr.open(Q8))
    local box = ffi.new("apr_gguf_writer *[1]")
    core.check(C.apr_gguf_writer_new(box))
    local w = ffi.gc(box[0], C.apr_gguf_writer_free)
    local key, v = ffi.new("const char *[1]"), ffi.new("apr_gguf_value")
    local g = C.apr_source_gguf(f:handle(), 0)
    for i = 0, tonumber(C.apr_gguf_n_kv(g)) - 1 do
        core.check(C.apr_gguf_kv(g, i, key, v))
        local k = ffi.string(key[0])
        if k == "tokenizer.chat_template" then
            core.check(C.apr_gguf_writer_add_str(w, k, "{{ messages }}", 14))
        else
            core.check(C.apr_gguf_writer_add_value(w, key[0], v))
        end
    end
    local ts = f:tensors()
    for _, t in ipairs(ts) do
        core.check(C.apr_gguf_writer_add_tensor(w, t.name, t.dtype, #t.shape, ffi.new("int64_t[4]", t.shape)))
    end
    local out = dir .. "/altered.gguf"
    core.check(C.apr_gguf_writer_begin(w, out))
    for i, t in ipairs(ts) do
        local data, n = f:tensor_data(t.name)
        local copy = ffi.new("uint8_t[?]", n)
        ffi.copy(copy, data, n)
        if t.name == "output_norm.weight" then ffi.cast("float *", copy)[3] = 42.5 end
        core.check(C.apr_gguf_writer_write(w, i - 1, 0, copy, n))
    end
    core.check(C.apr_gguf_writer_finish(w))
    return out
end

describe("apr diff", function()
    it("finds a GGUF and its APR (every codec) equivalent", function()
        local dir = h.tmpdir()
        for _, codec in ipairs({ "none", "lz4", "zstd" }) do
            local out = dir .. "/" .. codec .. ".apr"
            assert.equal(0, h.apr("convert " .. Q4 .. " -o " .. out .. " --compression " .. codec).code)
            local r = h.apr("diff " .. Q4 .. " " .. out)
            assert.equal(0, r.code, r.out .. r.err)
            assert.truthy(r.out:find("tensors: the same (27, all bit-identical)", 1, true), r.out)
            assert.truthy(r.out:find("\nequivalent\n$"), r.out)
            -- and either way round, and APR against APR
            assert.equal(0, h.apr("diff " .. out .. " " .. Q4).code)
            assert.equal(0, h.apr("diff " .. out .. " " .. dir .. "/none.apr").code)
        end
        h.rmtree(dir)
    end)

    it("measures tensors of different types by value", function()
        local r = h.apr("diff " .. Q8 .. " " .. Q4)
        assert.equal(1, r.code)
        assert.truthy(r.out:find("general.file_type: 7 vs 15", 1, true), r.out)
        assert.truthy(r.out:match("token_embd%.weight: Q8_0 vs Q4_K: %d+ of 524288 values differ, max |a %- b| = 0%.%d+"),
            r.out)
        assert.truthy(r.out:find("tokenizer: the same (2048 tokens, 1789 merges)", 1, true), r.out)
        assert.truthy(r.out:find("\nnot equivalent\n$"), r.out)
        local j = cjson.decode(h.apr("diff --json " .. Q8 .. " " .. Q4).out)
        assert.is_false(j.equivalent)
        assert.equal(11, j.tensors.bit_identical)  -- the F32 norms
        for _, d in ipairs(j.tensors.differences) do
            assert.equal("type", d.what)
            assert.is_true(d.max_abs_diff > 0 and d.max_abs_diff < 1, d.name)
        end
    end)

    it("names a changed value, template and tensor element", function()
        local dir = h.tmpdir()
        local alt = altered(dir)
        local r = h.apr("diff " .. Q8 .. " " .. alt)
        assert.equal(1, r.code)
        assert.truthy(r.out:find("metadata: the same", 1, true), r.out)
        assert.truthy(r.out:find("chat template: 1 difference\n  tokenizer.chat_template: ", 1, true), r.out)
        assert.truthy(r.out:find("output_norm.weight: F32: 1 of 256 values differ, max |a - b| = ", 1, true), r.out)
        local j = cjson.decode(h.apr("diff --json " .. Q8 .. " " .. alt).out)
        assert.equal(1, #j.tensors.differences)
        assert.equal(3, j.tensors.differences[1].first)
        assert.equal(26, j.tensors.bit_identical)
        h.rmtree(dir)
    end)

    it("fails with one line on a file it cannot read", function()
        local r = h.apr("diff " .. Q8 .. " README.md")
        assert.equal(1, r.code)
        assert.equal(1, select(2, r.err:gsub("\n", "")), r.err)
        assert.equal(2, h.apr("diff " .. Q8).code)
    end)
end)
