-- verify_spec.lua — apr verify: structure and shape checks, SHA256 against a
-- digest or the sidecar, the deep NaN/Inf scan.
local h = require "tests.lua.helpers"
local apr = require "apr"

local Q8_SHA = "27c0cb833101a1fa14651a147d5e8ca3a3ecda18f3753419fd6fd3f700f3ea2f"

-- A copy of a fixture in a fresh folder (removed by the caller).
local function scratch(name)
    local dir = h.tmpdir()
    os.execute("cp tests/fixtures/models/" .. name .. " " .. dir .. "/m.gguf")
    return dir, dir .. "/m.gguf"
end

-- Rewrites a copy of tiny-q8_0.gguf through the GGUF writer with one change:
-- `edit(name, shape, dtype)` returns the shape and type to write instead.
local function rewritten(path, out, edit)
    local core = require "apr.core"
    local C, ffi = core.C, core.ffi
    local f = assert(apr.open(path))
    local box = ffi.new("apr_gguf_writer *[1]")
    core.check(C.apr_gguf_writer_new(box))
    local w = ffi.gc(box[0], C.apr_gguf_writer_free)
    local key, v = ffi.new("const char *[1]"), ffi.new("apr_gguf_value")
    for i = 0, tonumber(C.apr_source_n_kv(f:handle())) - 1 do
        core.check(C.apr_source_kv(f:handle(), i, key, v))
        core.check(C.apr_gguf_writer_add_value(w, key[0], v))
    end
    local ts = f:tensors()
    for _, t in ipairs(ts) do
        local shape = edit(t.name, t.shape) or t.shape
        core.check(C.apr_gguf_writer_add_tensor(w, t.name, t.dtype, #shape, ffi.new("int64_t[4]", shape)))
    end
    core.check(C.apr_gguf_writer_begin(w, out))
    for i, t in ipairs(ts) do
        local data, n = f:tensor_data(t.name)
        n = math.min(n, tonumber(C.apr_gguf_writer_tensor_nbytes(w, i - 1)))
        core.check(C.apr_gguf_writer_write(w, i - 1, 0, data, n))
    end
    core.check(C.apr_gguf_writer_finish(w))
end

describe("apr verify", function()
    it("passes every fixture model, deep scan included", function()
        for _, name in ipairs({ "tiny-q4_k_m.gguf", "tiny-q8_0.gguf", "tiny-f16.gguf", "gqa5-q4_k_m.gguf" }) do
            local r = h.apr("verify --deep tests/fixtures/models/" .. name)
            assert.equal(0, r.code, r.err)
            assert.truthy(r.out:find("^ok    header       GGUF v3, 22 keys, 27 tensors\n"), r.out)
            assert.truthy(r.out:find("\nok    model        the loader's checks pass", 1, true), r.out)
            assert.truthy(r.out:find("\nok    shapes       qwen2: 2 layers, ", 1, true), r.out)
            assert.truthy(r.out:find("\nok    deep         27 tensors, ", 1, true), r.out)
            assert.is_nil(r.out:find("FAIL"))
        end
    end)

    it("checks the SHA256 against a given digest", function()
        local path = "tests/fixtures/models/tiny-q8_0.gguf"
        local r = h.apr("verify " .. path .. " --checksum " .. Q8_SHA:upper())
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("\nok    sha256       " .. Q8_SHA .. " matches the given digest\n", 1, true))
        r = h.apr("verify --checksum " .. ("0"):rep(64) .. " " .. path)
        assert.equal(1, r.code)
        assert.truthy(r.out:find("\nFAIL  sha256       " .. Q8_SHA .. ", but the given digest is " .. ("0"):rep(64), 1, true))
        assert.equal("apr verify: " .. path .. ": 1 of 6 checks failed (sha256: " .. Q8_SHA .. ", but the given digest is "
            .. ("0"):rep(64) .. ")\n", r.err)
        assert.equal(2, h.apr("verify " .. path .. " --checksum 1234").code)
        assert.equal(2, h.apr("verify " .. path .. " " .. Q8_SHA).code)
    end)

    it("checks the SHA256 against the recorded sidecar", function()
        local dir, path = scratch("tiny-q8_0.gguf")
        local r = h.apr("verify --checksum " .. path)
        assert.equal(1, r.code)
        assert.truthy(r.out:find("FAIL  sha256       no recorded digest", 1, true), r.out)
        assert.equal(0, h.apr("info " .. path).code)
        r = h.apr("verify --checksum " .. path)
        assert.equal(0, r.code, r.out)
        assert.truthy(r.out:find("matches the recorded digest", 1, true))
        -- corrupt one byte of tensor data: the file changed, the digest no longer matches
        local f = assert(io.open(path, "r+b"))
        f:seek("set", 2000000)
        f:write("\1\2\3")
        f:close()
        r = h.apr("verify --checksum " .. path)
        assert.equal(1, r.code)
        assert.truthy(r.out:find("but the digest recorded before the file last changed is " .. Q8_SHA, 1, true), r.out)
        h.rmtree(dir)
    end)

    it("fails shapes that do not match the hyperparameters", function()
        local dir = h.tmpdir()
        rewritten("tests/fixtures/models/tiny-q8_0.gguf", dir .. "/bad.gguf", function(name, shape)
            if name == "blk.1.attn_k.weight" then return { 256, 64 } end
        end)
        local r = h.apr("verify " .. dir .. "/bad.gguf")
        assert.equal(1, r.code)
        assert.truthy(r.out:find("FAIL  shapes       tensor 'blk.1.attn_k.weight' has shape [256, 64], expected [256, 128]", 1, true), r.out)
        h.rmtree(dir)
    end)

    -- Issue 16: verify said ok to files the loader refuses. Its model check
    -- is the loader's (apr_model_validate): the same words as apr pass.
    -- tests/lua/malformed_spec.lua runs every such case of the corpus.
    it("fails what the loader refuses, with the loader's message", function()
        local path = "tests/fixtures/malformed/model-rope-base-inf.gguf"
        local v, p = h.apr("verify --deep " .. path), h.apr("pass " .. path .. " --prompt hi")
        assert.same({ 1, 1 }, { v.code, p.code })
        local msg = p.err:match("^apr pass: " .. path:gsub("%p", "%%%0") .. ": ([^\n]+)\n$")
        assert.truthy(msg, p.err)
        assert.truthy(v.out:find("\nFAIL  model        " .. msg .. "\n", 1, true), v.out)
        assert.truthy(v.out:find("\nok    deep ", 1, true), v.out)  -- the other checks still run
    end)

    it("--deep finds a NaN scale", function()
        local dir, path = scratch("tiny-q8_0.gguf")
        local f = assert(apr.open(path))
        local t = f:tensors()[3]  -- output.weight, Q8_0: a block starts with its f16 scale
        assert.equal("output.weight", t.name)
        local at = t.file_offset + 34 * 5
        f:close()
        local io_f = assert(io.open(path, "r+b"))
        io_f:seek("set", at)
        io_f:write("\0\126")  -- f16 0x7e00: NaN
        io_f:close()
        local r = h.apr("verify --deep " .. path)
        assert.equal(1, r.code)
        assert.truthy(r.out:find("\nFAIL  deep         tensor 'output.weight': ", 1, true), r.out)
        assert.truthy(r.err:find("1 of 6 checks failed (deep: tensor 'output.weight': ", 1, true), r.err)
        h.rmtree(dir)
    end)

    it("reports malformed files in one line", function()
        local r = h.apr("verify tests/fixtures/malformed/tensor-overlap.gguf")
        assert.equal(1, r.code)
        assert.equal("", r.out)
        assert.truthy(r.err:match("^apr verify: [^\n]*overlap\n$"), r.err)
    end)
end)

describe("apr verify on an APR file", function()
    local function converted(dir)
        assert.equal(0, h.apr("convert tests/fixtures/models/tiny-q8_0.gguf -o " .. dir .. "/m.apr --compression zstd").code)
        return dir .. "/m.apr"
    end

    it("checks every chunk, and the SHA-256 the file records", function()
        local dir = h.tmpdir()
        local path = converted(dir)
        local r = h.apr("verify " .. path .. " --checksum --deep")
        assert.equal(0, r.code, r.out .. r.err)
        assert.truthy(r.out:find("ok    header       APR v2 of a GGUF v3, ", 1, true), r.out)
        assert.truthy(r.out:match("ok    chunks       %d+ chunks %([%d.]+ MB of tensor data%) match their checksums"), r.out)
        assert.truthy(r.out:match("ok    sha256       %x+ matches the digest the file records"), r.out)
        assert.truthy(r.out:find("ok    deep ", 1, true), r.out)
        h.rmtree(dir)
    end)

    it("names the tensor and chunk whose bytes changed", function()
        local dir = h.tmpdir()
        local path = converted(dir)
        local t = assert(apr.open(path)):tensors()
        local target
        for _, x in ipairs(t) do if x.name == "blk.1.ffn_up.weight" then target = x end end
        local f = assert(io.open(path, "r+b"))
        f:seek("set", target.file_offset + 20)
        local b = f:read(1)
        f:seek("set", target.file_offset + 20)
        f:write(string.char((b:byte() + 1) % 256))
        f:close()
        local r = h.apr("verify " .. path .. " --checksum")
        assert.equal(1, r.code)
        assert.truthy(r.out:find("FAIL  chunks       " .. path .. ": tensor 'blk.1.ffn_up.weight' chunk 0 of 1: ", 1, true),
            r.out)
        assert.truthy(r.out:find("FAIL  sha256 ", 1, true), r.out)
        assert.truthy(r.err:find("2 of 7 checks failed (chunks: ", 1, true), r.err)
        h.rmtree(dir)
    end)
end)
