-- inspect_model_spec.lua — demos/inspect_model.lua runs and shows what it
-- promises: metadata, the tensor table, one tensor's statistics.
local h = require "tests.lua.helpers"

describe("demos/inspect_model.lua", function()
    it("prints a model's metadata and tensor table", function()
        local r = h.apr("run demos/inspect_model.lua tests/fixtures/models/tiny-q4_k_m.gguf")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("^tests/fixtures/models/tiny%-q4_k_m.gguf: GGUF v3, 1.5 MB\n"), r.out)
        assert.truthy(r.out:find("\n  tokenizer.ggml.tokens%s+%[2048 items%] first: !\n"), r.out)
        assert.truthy(r.out:find("\n  output.weight%s+Q6_K%s+%[256, 2048%]%s+430080 bytes\n"), r.out)
        assert.truthy(r.out:find("\n2230528 parameters in 1440000 bytes (5.16 bits each)\n", 1, true), r.out)
        local std = tonumber(r.out:match("token_embd.weight: Q4_K %[256, 2048%], mean [-%d.]+, std ([%d.]+)"))
        assert.is_true(std and math.abs(std - 1 / 16) < 0.01, r.out)
    end)

    it("says why when the file cannot be opened", function()
        local r = h.apr("run demos/inspect_model.lua tests/fixtures/malformed/bad-magic.gguf")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("not a GGUF file", 1, true))
    end)
end)
