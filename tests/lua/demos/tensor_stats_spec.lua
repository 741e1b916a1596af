-- tensor_stats_spec.lua — demos/tensor_stats.lua runs and shows what it
-- promises: per-tensor statistics and a tensor's quantization round trips.
local h = require "tests.lua.helpers"

describe("demos/tensor_stats.lua", function()
    it("prints every tensor's statistics and the round-trip errors of one", function()
        local r = h.apr("run demos/tensor_stats.lua tests/fixtures/models/tiny-q4_k_m.gguf")
        assert.equal(0, r.code, r.err)
        local rows = 0
        for name, kind, ne0, std, scaled in r.out:gmatch("\n(%S+)%s+(%S+)%s+(%d+)x%d+%s+%S+%s+(%S+)%s+%S+%s+%S+%s+(%S+)") do
            rows = rows + 1
            -- the fixture's weights have std 1/sqrt(fan-in)
            assert.is_true(math.abs(tonumber(scaled) - 1) < 0.05, name .. " " .. scaled)
            assert.is_true(math.abs(tonumber(std) * math.sqrt(tonumber(ne0)) - tonumber(scaled)) < 0.002)
            assert.truthy(kind == "Q4_K" or kind == "Q6_K", kind)
        end
        assert.equal(16, rows)   -- the 2-D tensors
        assert.truthy(r.out:find("\nblk.0.ffn_down.weight: tensor Q4_K [512, 256] { ", 1, true), r.out)
        local e = {}
        for dtype, v in r.out:gmatch("\nas (%S+)%s*: relative RMS error (%S+)") do e[dtype] = tonumber(v) end
        assert.is_true(e.q8_0 < 0.006 and e.q6_k < 0.02 and e.q4_k < 0.08 and e.f16 < 0.001, r.out)
    end)

    it("names a missing tensor", function()
        local r = h.apr("run demos/tensor_stats.lua tests/fixtures/models/tiny-q4_k_m.gguf no.such.tensor")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("no tensor no.such.tensor", 1, true))
    end)
end)
