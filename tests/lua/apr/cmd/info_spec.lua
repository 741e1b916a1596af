-- info_spec.lua — apr info: the facts of a model file, --format, --json.
local h = require "tests.lua.helpers"
local cjson = require "cjson"

local Q4 = "tests/fixtures/models/tiny-q4_k_m.gguf"

describe("apr info", function()
    it("prints the spec's lines for a Q4_K_M file", function()
        local r = h.apr("info --no-hash " .. Q4)
        assert.equal(0, r.code, r.err)
        assert.equal(table.concat({
            "Model: synthetic-qwen2-tiny-q4_k_m",
            "Format: GGUF v3",
            "Quantization: Q4_K_M",
            "Size: 1.5 MB",
            "Parameters: 2.2M",
            "Context: 4096 tokens",
            "Architecture: Qwen2",
            "Layers: 2",
            "Embedding: 256",
            "Heads: 4",
            "KV heads: 2",
            "Vocabulary: 2048 tokens",
        }, "\n") .. "\n", r.out)
        assert.equal("", r.err)
    end)

    it("ends with the SHA256, cached after the first time", function()
        local dir = h.tmpdir()
        os.execute("cp tests/fixtures/models/tiny-q8_0.gguf " .. dir .. "/m.gguf")
        local r = h.apr("info " .. dir .. "/m.gguf")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("\nQuantization: Q8_0\n", 1, true))
        assert.equal("SHA256: 27c0cb833101a1fa14651a147d5e8ca3a3ecda18f3753419fd6fd3f700f3ea2f\n",
            r.out:match("SHA256: %x+\n$"))
        assert.truthy(h.read_file(dir .. "/m.gguf.sha256"):find("^27c0cb83"))
        h.rmtree(dir)
    end)

    it("--format prints only the format, for a header check", function()
        local r = h.apr("info --format tests/fixtures/models/tiny-f16.gguf")
        assert.equal(0, r.code)
        assert.equal("GGUF v3\n", r.out)
        r = h.apr("info --format tests/fuzz/seeds/gguf/valid-v2.gguf")
        assert.equal("GGUF v2\n", r.out)
        r = h.apr("info --format tests/fixtures/malformed/version-4.gguf")
        assert.equal(1, r.code)
        assert.equal("", r.out)
    end)

    it("--json gives one object with every field", function()
        local r = h.apr("info --json --no-hash tests/fixtures/models/gqa5-q4_k_m.gguf")
        assert.equal(0, r.code, r.err)
        local v = cjson.decode(r.out)
        assert.equal("GGUF v3", v.format)
        assert.equal("Q4_K_M", v.quantization)
        assert.equal("qwen2", v.architecture)
        assert.equal(15375072, v.size)
        assert.equal(10, v.heads)
        assert.equal(2, v.kv_heads)
        assert.equal(1280, v.embedding_length)
        assert.equal(8192, v.context_length)
        assert.equal(2048, v.vocab)
        assert.equal(27, v.tensors)
        -- token_embd + output (1280 x 2048 each), 2 layers, norms and biases
        local layer = 1280 * 1280 * 2 + 1280 * 256 * 2 + 3 * 1280 * 1536 + 1280 * 2 + 1280 + 256 * 2
        assert.equal(2 * 1280 * 2048 + 1280 + 2 * layer, v.parameters)
        assert.is_nil(v.sha256)
    end)

    it("names the quantization from the tensors when general.file_type is absent", function()
        local r = h.apr("info --no-hash tests/fuzz/seeds/gguf/valid-base.gguf")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("\nQuantization: Q8_0\n", 1, true), r.out)
        assert.truthy(r.out:find("\nParameters: 72\n", 1, true), r.out)
    end)

    it("fails with exit 1 and one line for bad files", function()
        local r = h.apr("info tests/fixtures/nothing-here.gguf")
        assert.equal(1, r.code)
        assert.equal("apr info: tests/fixtures/nothing-here.gguf: No such file or directory\n", r.err)
        r = h.apr("info tests/fixtures/malformed/tensor-offset-past-end.gguf")
        assert.equal(1, r.code)
        assert.equal("apr info: tests/fixtures/malformed/tensor-offset-past-end.gguf: tensor 'token_embd.weight' " ..
            "data [4576, 4644) past end of file (608 bytes)\n", r.err)
        r = h.apr("info")
        assert.equal(2, r.code)
    end)
end)

describe("apr info on an APR file", function()
    it("adds the codecs, the bytes stored and the source", function()
        local dir = h.tmpdir()
        assert.equal(0, h.apr("convert " .. Q4 .. " -o " .. dir .. "/m.apr --compression zstd").code)
        local r = h.apr("info --no-hash " .. dir .. "/m.apr")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("Format: APR v2\n", 1, true), r.out)
        assert.truthy(r.out:find("Quantization: Q4_K_M\n", 1, true), r.out)
        assert.truthy(r.out:match("Compression: [^\n]*zstd %(%d+ tensors%)"), r.out)
        assert.truthy(r.out:match("Tensor data: [%d.]+ [KM]B stored for 1%.4 MB %([%d.]+%%%), %d+ chunks\n"), r.out)
        assert.truthy(r.out:find("Source: GGUF v3, 1.5 MB\n", 1, true), r.out)
        local j = cjson.decode(h.apr("info --json --no-hash " .. dir .. "/m.apr").out)
        assert.equal("APR v2", j.format)
        assert.equal(64, #j.source_sha256)
        assert.is_true(j.stored_bytes < j.tensor_bytes)
        assert.equal("APR v2\n", h.apr("info --format " .. dir .. "/m.apr").out)
        h.rmtree(dir)
    end)
end)
