-- sampler_spec.lua — the Lua face of the C sampler (its statistics are
-- tested in C: tests/runtime/model/sampler_test.c).
local sampler = require "apr.sampler"
local ffi = require("apr.core").ffi

local function logits(t)
    return ffi.new("float[?]", #t, t)
end

describe("apr.sampler", function()
    it("is greedy at temperature 0", function()
        local s = sampler.new(4, { temperature = 0 })
        assert.equal(2, s:sample(logits({ 0.1, 0.5, 3.0, -1 })))
    end)

    it("repeats itself for the same seed and differs for another", function()
        local l = {}
        for i = 1, 1000 do l[i] = math.sin(i) * 3 end
        local buf = logits(l)
        local function seq(seed)
            local s = sampler.new(1000, { temperature = 1.0, seed = seed })
            local out = {}
            for i = 1, 50 do out[i] = s:sample(buf) end
            return table.concat(out, ",")
        end
        assert.equal(seq(7), seq(7))
        assert.not_equal(seq(7), seq(8))
    end)

    it("applies a logit bias given as a table", function()
        local s = sampler.new(3, { temperature = 0, logit_bias = { [0] = -math.huge, [1] = 5 } })
        assert.equal(1, s:sample(logits({ 9, 1, 2 })))
    end)

    it("returns nil and a message for NaN logits", function()
        local s = sampler.new(3, { temperature = 0 })
        local id, err = s:sample(logits({ 0, 0 / 0, 1 }))
        assert.is_nil(id)
        assert.truthy(err:find("token 1 is NaN", 1, true))
    end)

    it("raises for options out of range, naming them", function()
        assert.has_error(function() sampler.new(10, { top_p = 2 }) end, "sampler: top_p must be in (0, 1], got 2")
        assert.has_error(function() sampler.new(10, { top_k = "x" }) end)
    end)

    it("reports raw log-probabilities and the top alternatives", function()
        local lp, top = sampler.logprobs(logits({ 0, math.log(3), 0 }), 3, 0, 2)
        assert.near(math.log(1 / 5), lp, 1e-6)
        assert.equal(1, top[1].id)
        assert.near(math.log(3 / 5), top[1].logprob, 1e-6)
        assert.equal(0, top[2].id)
    end)
end)
