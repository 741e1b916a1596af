-- devices_spec.lua — apr devices: lists GPUs, or says why there are none.
local h = require "tests.lua.helpers"
local core = require "apr.core"

describe("apr devices", function()
    it("prints one line per device, or that models run on the CPU", function()
        local r = h.apr("devices")
        assert.are.equal(0, r.code)
        if core.C.apr_device_count() == 0 then
            assert.truthy(r.out:find("run on the CPU", 1, true))
        else
            assert.truthy(r.out:find("^0: "))
            assert.truthy(r.out:find("compute %d+%.%d"))
        end
    end)

    it("--json prints an array with the same devices", function()
        local r = h.apr("devices --json")
        assert.are.equal(0, r.code)
        local list = require("cjson").decode(r.out)
        assert.are.equal(tonumber(core.C.apr_device_count()), #list)
        for i, d in ipairs(list) do
            assert.are.equal(i - 1, d.index)
            assert.is_true(d.memory_bytes > 0)
        end
    end)

    it("a model asked for on the GPU without one fails with one clear line", function()
        if core.C.apr_device_count() > 0 then
            pending("this machine has a GPU")
            return
        end
        -- The binary says which of the two reasons applies: a CUDA build
        -- finds no device, a build without the backend cannot use one.
        local v = h.apr("version --json")
        assert.are.equal(0, v.code)
        local cuda = require("cjson").decode(v.out).cuda
        assert.are.equal("boolean", type(cuda))
        local want = cuda and "no CUDA device" or "this build of apr has no CUDA backend"
        local r = h.apr("pass --gpu tests/fixtures/models/tiny-q8_0.gguf --prompt hi -n 1")
        assert.are.equal(1, r.code)
        assert.truthy(r.err:find(want, 1, true), "wanted '" .. want .. "' in: " .. r.err)
        assert.are.equal(1, select(2, r.err:gsub("\n", "")))
    end)
end)
