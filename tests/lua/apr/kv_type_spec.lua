-- kv_type_spec.lua — quantized KV caches (kv_type q8_0, q4_0): the Lua
-- options, and the next-token distributions against the f16 cache's on
-- every device this machine has (CUDA pending without a GPU).
--
-- Teacher-forced through tests/lua/apr/kv_compare.lua: the golden models
-- on their golden prompts and continuations (1,138 positions each), the
-- default model on 192 positions of repository text. tests/kv_quality.lua
-- is the long version (2,048 positions per model; docs/model.md has its
-- figures).
local core = require "apr.core"
local kc = require "tests.lua.apr.kv_compare"
local C, ffi = core.C, core.ffi

local GOLDEN = { "tiny-f16", "tiny-q4_k_m", "tiny-q8_0", "gqa5-q4_k_m" }

local function has_device(device)
    return device == "cpu" or C.apr_device_count() > 0
end

describe("kv_type options", function()
    local apr = require "apr"

    it("apr.load takes f16, q8_0 and q4_0 and refuses anything else", function()
        local ok, err = pcall(apr.load, "tests/fixtures/models/tiny-q8_0.gguf", { kv_type = "q5_0" })
        assert.is_false(ok)
        assert.matches("kv_type must be f16, q8_0, q4_0, got 'q5_0'", err)
        local first
        for _, t in ipairs({ "f16", "q8_0", "q4_0" }) do
            local m = assert(apr.load("tests/fixtures/models/tiny-q8_0.gguf", { device = "cpu", ctx = 256, kv_type = t }))
            local logits = m:forward(m:tokenize("fn main() { println!"))
            first = first or logits
            assert.equal(first:shape()[1], logits:shape()[1])
        end
    end)

    it("m:generate runs on the model's kv_type (its engine's cache), as apr.engine.new does given it", function()
        local path = "tests/fixtures/models/tiny-q8_0.gguf"
        local function logprobs(gen)
            local out = {}
            for t in gen do if t.id then out[#out + 1] = t.logprob end end
            return out
        end
        local ids = { 1, 200, 300, 400, 500, 600, 700 }
        local opts = { max_tokens = 4, temperature = 0, ignore_eos = true, logprobs = 0 }
        local q4 = assert(apr.load(path, { device = "cpu", ctx = 256, kv_type = "q4_0" }))
        local f16 = assert(apr.load(path, { device = "cpu", ctx = 256 }))
        local from_q4, from_f16 = logprobs(q4:generate(ids, opts)), logprobs(f16:generate(ids, opts))
        assert.equal(4, #from_q4)
        assert.are_not.same(from_f16, from_q4)
        local eng = assert(require("apr.engine").new(f16, { parallel = 1, ctx = 256, kv_type = "q4_0" }))
        assert.same(from_q4, logprobs(eng:generate(ids, { max_tokens = 4, temperature = 0, ignore_eos = true,
                                                          logprobs = true })))
        eng:free()
    end)

    it("a cache type the backend lacks fails at context creation with a message naming it", function()
        local mp = ffi.new("apr_model_params")
        C.apr_model_params_default(mp)
        mp.device = C.APR_DEVICE_CPU
        local mbox = ffi.new("apr_model *[1]")
        assert.equal(0, C.apr_model_load("tests/fixtures/models/tiny-q8_0.gguf", mp, mbox))
        local cp = ffi.new("apr_context_params")
        C.apr_context_params_default(cp)
        cp.n_ctx, cp.kv_type = 64, C.APR_Q4_1
        local cbox = ffi.new("apr_context *[1]")
        assert.equal(C.APR_ERR_UNSUPPORTED, C.apr_context_new(mbox[0], cp, cbox))
        assert.matches("the CPU backend has no Q4_1 KV cache %(it has F16, Q8_0 and Q4_0%)",
            ffi.string(C.apr_last_error()))
        C.apr_model_free(mbox[0])
    end)
end)

for _, device in ipairs({ "cpu", "cuda" }) do
    describe("quantized KV caches against f16 on " .. device, function()
        for _, model in ipairs(GOLDEN) do
            it(model .. ": q8_0 within KLD 1e-3 and 98% of decisive top-1s, q4_0 further", function()
                if not has_device(device) then
                    pending("no CUDA device")
                    return
                end
                local cmp = kc.open("tests/fixtures/models/" .. model .. ".gguf", device, { "f16", "q8_0", "q4_0" }, 1024)
                for _, s in ipairs(kc.golden_sequences(model)) do cmp:sequence(s.ids, s.segments) end
                local r = cmp:results()
                cmp:close()
                local q8, q4 = r.q8_0, r.q4_0
                assert.is_true(q8.positions >= 1100)
                -- the issue's q8_0 target for the KLD; agreement on these random models is measured over
                -- the decisive positions (f16's margin > 0.05: 98.9-100% here, 99.6-100% over the
                -- 2,048 positions of tests/kv_quality.lua, which judges the 99% target)
                assert.is_true(q8.kld > 0 and q8.kld <= 1e-3, string.format("q8_0 mean KLD %.3g", q8.kld))
                assert.is_true(q8.decisive_agree >= 0.98, string.format("q8_0 decisive agreement %.4f", q8.decisive_agree))
                assert.is_true(q4.kld > q8.kld and q4.kld < 0.2, string.format("q4_0 mean KLD %.3g", q4.kld))
            end)
        end

        it("the default model: q8_0 and q4_0 close to f16 on 192 positions of text", function()
            if not has_device(device) then
                pending("no CUDA device")
                return
            end
            local path = require("apr.model").default_model_path()
            local f = io.open(path, "rb")
            if not f then
                pending("the default model is not installed (make model)")
                return
            end
            f:close()
            local cmp = kc.open(path, device, { "f16", "q8_0", "q4_0" }, 256)
            local ids = cmp:tokenize(kc.text(4096))
            local seq = {}
            for i = 1, 192 do seq[i] = ids[i] end
            cmp:sequence(seq, { { 128, 64 }, { nil, 8 } })
            local r = cmp:results()
            cmp:close()
            local q8, q4 = r.q8_0, r.q4_0
            assert.equal(192, q8.positions)
            -- measured on the CPU: q8_0 KLD 0.0032, 97.9% agreement; q4_0 0.045, 93.2% (the issue's
            -- q8_0 target, 1e-3 and 99%, is not met on this model: docs/model.md)
            assert.is_true(q8.kld <= 0.006, string.format("q8_0 mean KLD %.3g", q8.kld))
            assert.is_true(q8.agree >= 0.96, string.format("q8_0 top-1 agreement %.4f", q8.agree))
            assert.is_true(q4.kld > q8.kld and q4.kld <= 0.15, string.format("q4_0 mean KLD %.3g", q4.kld))
        end)
    end)
end
