-- model_apr_spec.lua — a model loaded from an APR file computes exactly what
-- the GGUF it came from computes: bit-identical CPU logits over a prompt and
-- the same greedy token ids, for every fixture with every codec, and for the
-- default model (docs/apr-format.md; the GPU machine's check of the 32B is
-- bench/apr_convert.lua, whose loads compare first tokens).
local h = require "tests.lua.helpers"
local apr = require "apr"
local ffi = require "ffi"

local FIXTURES = { "tiny-q8_0.gguf", "tiny-q4_k_m.gguf", "tiny-f16.gguf", "gqa5-q4_k_m.gguf" }
local DEFAULT = "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


local function logits_bytes(m, ids)
    local t = assert(m:forward(ids))
    return ffi.string(t:data(), t:nbytes())
end

local function greedy(m, prompt, n)
    local ids = {}
    for t in m:generate(prompt, { max_tokens = n, temperature = 0, raw = true }) do ids[#ids + 1] = t.id end
    return ids
end

-- GGUF and APR of src side by side on the CPU.
local function same_model(src, apr_path, prompt, n_gen)
    local g = assert(apr.load(src, { device = "cpu", ctx = 256 }))
    local a = assert(apr.load(apr_path, { device = "cpu", ctx = 256 }))
    local ids = g:tokenize(prompt)
    assert.same(ids, a:tokenize(prompt))
    assert.is_true(logits_bytes(g, ids) == logits_bytes(a, ids), "logits differ: " .. apr_path)
    assert.same(greedy(g, prompt, n_gen), greedy(a, prompt, n_gen))
end

describe("a model loaded from APR", function()
    for _, name in ipairs(FIXTURES) do
        it("computes what " .. name .. " computes, with every codec", function()
            local dir = h.tmpdir()
            local src = "tests/fixtures/models/" .. name
            for _, codec in ipairs({ "none", "lz4", "zstd" }) do
                local out = dir .. "/" .. codec .. ".apr"
                local r = h.apr("convert " .. src .. " -o " .. out .. " --compression " .. codec .. " --chunk-size 64K")
                assert.equal(0, r.code, r.err)
                same_model(src, out, "fn fibonacci(n: u64) -> u64 {", 12)
            end
            h.rmtree(dir)
        end)
    end

    it("computes what the default model computes (lz4 and zstd)", function()
        if not h.exists(DEFAULT) then return pending("run make model") end
        local dir = h.tmpdir()
        for _, codec in ipairs({ "lz4", "zstd" }) do
            local out = dir .. "/" .. codec .. ".apr"
            local r = h.apr("convert " .. DEFAULT .. " -o " .. out .. " --compression " .. codec)
            assert.equal(0, r.code, r.err)
            same_model(DEFAULT, out, "fn fibonacci(n: u64) -> u64 {", 16)
            os.remove(out)
        end
        h.rmtree(dir)
    end)

    it("on the GPU streams through staging and gives the GGUF's greedy ids", function()
        if require("apr.core").C.apr_device_count() == 0 then return pending("no CUDA device") end
        local dir = h.tmpdir()
        for _, name in ipairs({ "gqa5-q4_k_m.gguf", "tiny-q8_0.gguf" }) do
            local src = "tests/fixtures/models/" .. name
            for _, codec in ipairs({ "none", "lz4", "zstd" }) do
                local out = dir .. "/" .. codec .. ".apr"
                assert.equal(0, h.apr("convert " .. src .. " -o " .. out .. " --compression " .. codec ..
                    " --chunk-size 64K").code)
                local g = assert(apr.load(src, { device = "cuda", ctx = 256 }))
                local a = assert(apr.load(out, { device = "cuda", ctx = 256 }))
                assert.equal("cuda", a.info.device)
                local prompt = "fn fibonacci(n: u64) -> u64 {"
                assert.same(greedy(g, prompt, 16), greedy(a, prompt, 16))
                g, a = nil, nil
                collectgarbage()
            end
        end
        h.rmtree(dir)
    end)

    it("is what apr pass answers from, the same text as from the GGUF", function()
        local dir = h.tmpdir()
        local src = "tests/fixtures/models/tiny-q4_k_m.gguf"
        assert.equal(0, h.apr("convert " .. src .. " -o " .. dir .. "/m.apr --compression zstd").code)
        local a = h.apr("pass " .. dir .. "/m.apr --prompt 'hello' --raw --max-tokens 8")
        local g = h.apr("pass " .. src .. " --prompt 'hello' --raw --max-tokens 8")
        assert.equal(0, a.code, a.err)
        assert.equal(g.out, a.out)
        h.rmtree(dir)
    end)
end)
