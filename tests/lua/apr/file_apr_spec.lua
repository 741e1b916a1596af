-- file_apr_spec.lua — apr.open on an APR file answers what it does for the
-- GGUF it came from: the same metadata values, tensor table and tensor
-- values; plus codecs, stored sizes and the recorded digests.
local h = require "tests.lua.helpers"
local apr = require "apr"

local Q4 = "tests/fixtures/models/tiny-q4_k_m.gguf"

describe("apr.open on an APR file", function()
    local dir, path
    setup(function()
        dir = h.tmpdir()
        path = dir .. "/m.apr"
        assert.equal(0, h.apr("convert " .. Q4 .. " -o " .. path .. " --compression zstd").code)
    end)
    teardown(function() h.rmtree(dir) end)

    it("has the GGUF's metadata and tensors", function()
        local g, a = assert(apr.open(Q4)), assert(apr.open(path))
        assert.equal("APR", a.format)
        assert.equal(2, a.version)
        assert.equal(g.size, a.gguf_size)
        assert.same(g:keys(), a:keys())
        assert.same(g.metadata, a.metadata)
        local gt, at = g:tensors(), a:tensors()
        assert.equal(#gt, #at)
        for i, t in ipairs(gt) do
            assert.equal(t.name, at[i].name)
            assert.equal(t.type, at[i].type)
            assert.same(t.shape, at[i].shape)
            assert.equal(t.bytes, at[i].bytes)
            assert.truthy(at[i].codec == "zstd" or at[i].codec == "none")
            assert.is_true(at[i].stored_bytes <= t.bytes)
            -- the values, decoded
            local x, y = g:tensor(t.name), a:tensor(t.name)
            assert.equal(x:nbytes(), y:nbytes())
            local ffi = require "ffi"
            assert.is_true(ffi.string(x:data(), x:nbytes()) == ffi.string(y:data(), y:nbytes()), t.name)
        end
        assert.equal(64, #a.file_sha256)
        assert.equal(64, #a.source_sha256)
        assert.truthy(tostring(a):find("APR v2, 27 tensors", 1, true))
    end)

    it("checks every chunk of a tensor", function()
        local a = assert(apr.open(path))
        for i = 0, #a:tensors() - 1 do assert.is_true(a:check_tensor(i)) end
    end)
end)
