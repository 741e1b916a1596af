-- files_spec.lua — which files a quantization names (hub/files.lua), on
-- listings shaped like real GGUF repositories.
local files = require "apr.hub.files"

-- bartowski's layout: one file per quant, big ones split in a folder.
local BARTOWSKI = {
    "README.md", "Qwen2.5-Coder-32B-Instruct-IQ4_XS.gguf", "Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf",
    "Qwen2.5-Coder-32B-Instruct-Q4_K_S.gguf", "Qwen2.5-Coder-32B-Instruct-Q4_K.gguf",
    "Qwen2.5-Coder-32B-Instruct-Q8_0/Qwen2.5-Coder-32B-Instruct-Q8_0-00001-of-00002.gguf",
    "Qwen2.5-Coder-32B-Instruct-Q8_0/Qwen2.5-Coder-32B-Instruct-Q8_0-00002-of-00002.gguf",
    "Qwen2.5-Coder-32B-Instruct-f16.gguf", "mmproj-Qwen2.5-Coder-32B-Instruct-f16.gguf",
}
-- Qwen's own layout: lower case, split at the top level.
local QWEN = {
    "LICENSE", "qwen2.5-coder-32b-instruct-q4_k_m-00001-of-00003.gguf",
    "qwen2.5-coder-32b-instruct-q4_k_m-00003-of-00003.gguf", "qwen2.5-coder-32b-instruct-q4_k_m-00002-of-00003.gguf",
    "qwen2.5-coder-32b-instruct-q5_k_m-00001-of-00002.gguf",
}

describe("hub/files", function()
    it("matches a quant at name boundaries, case-insensitively", function()
        assert.is_true(files.matches("Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf", "q4_k_m"))
        assert.is_true(files.matches("model.Q4_K_M.gguf", "Q4_K_M"))
        assert.is_true(files.matches("x-q4_k_m-00002-of-00003.gguf", "Q4_K_M"))
        assert.is_false(files.matches("Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf", "Q4_K"))
        assert.is_false(files.matches("Qwen2.5-Coder-32B-Instruct-IQ4_XS.gguf", "Q4_XS"))
        assert.is_false(files.matches("Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf", "Q4_K_M.gguf"))
    end)

    it("picks one file, or every part of a split set in order", function()
        assert.same({ "Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf" }, files.select(BARTOWSKI, { quant = "Q4_K_M" }))
        assert.same({ "Qwen2.5-Coder-32B-Instruct-Q4_K.gguf" }, files.select(BARTOWSKI, { quant = "q4_k" }))
        assert.same({ "Qwen2.5-Coder-32B-Instruct-Q8_0/Qwen2.5-Coder-32B-Instruct-Q8_0-00001-of-00002.gguf",
                      "Qwen2.5-Coder-32B-Instruct-Q8_0/Qwen2.5-Coder-32B-Instruct-Q8_0-00002-of-00002.gguf" },
            files.select(BARTOWSKI, { quant = "Q8_0" }))
        assert.same({ "qwen2.5-coder-32b-instruct-q4_k_m-00001-of-00003.gguf",
                      "qwen2.5-coder-32b-instruct-q4_k_m-00002-of-00003.gguf",
                      "qwen2.5-coder-32b-instruct-q4_k_m-00003-of-00003.gguf" },
            files.select(QWEN, { quant = "Q4_K_M" }))
        -- F16 is the model, not the vision projector beside it.
        assert.same({ "Qwen2.5-Coder-32B-Instruct-f16.gguf" }, files.select(BARTOWSKI, { quant = "F16" }))
        -- --file, by path or by base name; a split part brings its set.
        assert.same({ "README.md" }, files.select(BARTOWSKI, { file = "README.md" }))
        assert.equal(2, #files.select(BARTOWSKI, { file = "Qwen2.5-Coder-32B-Instruct-Q8_0-00002-of-00002.gguf" }))
    end)

    it("says what is available when it cannot choose", function()
        local _, err = files.select(BARTOWSKI, { quant = "Q3_K_L" })
        assert.equal("no GGUF file for quantization Q3_K_L (available: F16, IQ4_XS, Q4_K, Q4_K_M, Q4_K_S, Q8_0)", err)
        _, err = files.select(BARTOWSKI, {})
        assert.truthy(err:find("choose one with --quant", 1, true))
        _, err = files.select(QWEN, { quant = "Q5_K_M" })
        assert.equal("split set qwen2.5-coder-32b-instruct-q5_k_m-00001-of-00002.gguf lacks parts (1 of 2 present)", err)
        _, err = files.select({ "a-Q4_K_M.gguf", "b-Q4_K_M.gguf" }, { quant = "Q4_K_M" })
        assert.truthy(err:find("several files match Q4_K_M", 1, true))
        _, err = files.select({ "README.md" }, {})
        assert.equal("no GGUF file", err)
        _, err = files.select(BARTOWSKI, { file = "nope.gguf" })
        assert.equal("no file nope.gguf", err)
        assert.same({ "Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf" }, files.select({ "Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf" }, {}))
    end)
end)
