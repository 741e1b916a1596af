-- model_demos_spec.lua — the model demos run (on the tiny fixture) and say
-- what they promise.
local h = require "tests.lua.helpers"

local TINY = "tests/fixtures/models/tiny-q8_0.gguf"

describe("model demos", function()
    it("generate.lua streams a completion and reports timings", function()
        local r = h.apr("run demos/generate.lua " .. TINY .. " 'def add(a, b):'")
        assert.equal(0, r.code, r.err)
        assert.equal("def add(a, b):", r.out:sub(1, 14))
        assert.truthy(r.err:find("generated at", 1, true), r.err)
    end)

    it("chat.lua reuses the first turn's context in the second", function()
        local r = h.apr("run demos/chat.lua " .. TINY)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("> Name a sorting algorithm.", 1, true))
        local reused = tonumber(r.err:match("(%d+) reused"))
        assert.is_true(reused and reused > 0, r.err)
    end)

    it("logits.lua lists the five likeliest next tokens", function()
        local r = h.apr("run demos/logits.lua " .. TINY)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("logits 2048x", 1, true), r.out)
        local n = 0
        for p in r.out:gmatch("p = ([%d.]+)") do
            n = n + 1
            assert.is_true(tonumber(p) > 0 and tonumber(p) <= 1)
        end
        assert.equal(5, n)
    end)
end)
