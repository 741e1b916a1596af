-- ref_spec.lua — model references (hub/ref.lua) and what a command's
-- MODEL argument names (apr.model_path).
local ref = require "apr.hub.ref"
local model_path = require "apr.model_path"

describe("hub/ref", function()
    it("parses ORG/REPO[@REV][:QUANT|:FILE]", function()
        local r = ref.parse("bartowski/Qwen2.5-Coder-32B-Instruct-GGUF:Q4_K_M")
        assert.equal("bartowski/Qwen2.5-Coder-32B-Instruct-GGUF", r.repo)
        assert.equal("main", r.rev)
        assert.equal("Q4_K_M", r.quant)
        r = ref.parse("hf.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF@v1.0:qwen2.5-coder-0.5b-instruct-q8_0.gguf")
        assert.equal("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", r.repo)
        assert.equal("v1.0", r.rev)
        assert.equal("qwen2.5-coder-0.5b-instruct-q8_0.gguf", r.file)
        r = ref.parse("org/repo")
        assert.is_nil(r.quant)
        assert.is_nil(r.file)
        for _, bad in ipairs({ "repo", "a/b/c", "/abs/x", "../a/b", "a/b:", "a/b:c:d", "a/..", "-a/b" }) do
            assert.is_nil(ref.parse(bad), bad)
        end
    end)

    it("leaves paths alone: existing files, and missing ones with a model extension", function()
        assert.equal("tests/fixtures/models/tiny-q8_0.gguf", model_path.resolve("tests/fixtures/models/tiny-q8_0.gguf"))
        assert.equal("models/missing.gguf", model_path.resolve("models/missing.gguf"))
        assert.is_nil(model_path.reference("tests/fixtures"))
        assert.truthy(model_path.reference("no-such-org/no-such-repo:Q4_K_M"))
        local path, err = model_path.resolve("no-such-org/no-such-repo:Q4_K_M")
        assert.is_nil(path)
        assert.truthy(err:find("apr pull no-such-org/no-such-repo --quant Q4_K_M", 1, true), err)
    end)
end)
