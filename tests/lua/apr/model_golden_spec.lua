-- model_golden_spec.lua — the fixtures' acceptance criteria (tests/fixtures/
-- golden, README "golden/") on every device this machine has: the CPU
-- always, CUDA where a GPU is present (pending otherwise, never passed).
--
-- For each model and prompt, through the C API:
--  * prompt logits against llama.cpp's: cosine >= 0.999 and
--    max |logit - golden| <= 6e-2 x max |golden|, per position;
--  * against the exact float64 forward pass: the same tolerance, since both
--    backends quantize activations as llama.cpp does (the CPU to 8 bits per
--    32 or 256 values, CUDA to 8 bits per 32 in decode and f16 in prefill);
--    except on the CPU for a float model (tiny-f16), whose products keep
--    activations in f32: there the README's 1e-3 x max |exact|;
--  * teacher-forced greedy: fed the golden ids one at a time, the argmax
--    equals the golden id at every step whose margin exceeds 0.05.
-- "long" prompts (879 tokens) take the GPU's prefill kernels, "hello" (4)
-- its decode kernels; the greedy steps are decode steps on both.
local core = require "apr.core"
local cjson = require "cjson"
local C, ffi = core.C, core.ffi

local MODELS = { "tiny-f16", "tiny-q4_k_m", "tiny-q8_0", "gqa5-q4_k_m" }
local PROMPTS = { "hello", "chat", "code", "unicode", "long" }

-- max |logit - exact| / max |exact| allowed (see the header)
local function exact_tolerance(device, model)
    return (device == "cpu" and model == "tiny-f16") and 1e-3 or 6e-2
end

local function read_json(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return cjson.decode(s)
end

local function compare(got, want, n)
    local dot, gg, ww, maxd, maxw = 0, 0, 0, 0, 0
    for i = 1, n do
        local g, w = got[i - 1], want[i]
        dot, gg, ww = dot + g * w, gg + g * g, ww + w * w
        maxd = math.max(maxd, math.abs(g - w))
        maxw = math.max(maxw, math.abs(w))
        if g ~= g then return -1, math.huge end
    end
    return dot / math.sqrt(gg * ww), maxd / maxw
end

local function argmax(row, n)
    local best, at = -math.huge, 0
    for i = 0, n - 1 do
        if row[i] > best then best, at = row[i], i end
    end
    return at
end

local function open(path, device)
    local mp = ffi.new("apr_model_params")
    C.apr_model_params_default(mp)
    mp.device = device
    local mbox = ffi.new("apr_model *[1]")
    assert(C.apr_model_load(path, mp, mbox) == 0, ffi.string(C.apr_last_error()))
    local cp = ffi.new("apr_context_params")
    C.apr_context_params_default(cp)
    cp.n_ctx, cp.n_batch = 1024, 1024
    local cbox = ffi.new("apr_context *[1]")
    assert(C.apr_context_new(mbox[0], cp, cbox) == 0, ffi.string(C.apr_last_error()))
    return mbox[0], cbox[0]
end

for _, device in ipairs({ "cpu", "cuda" }) do
    describe("golden fixtures on " .. device, function()
        for _, model in ipairs(MODELS) do
            for _, prompt in ipairs(PROMPTS) do
                it(model .. "." .. prompt .. ": prompt logits, exact logits, teacher-forced greedy", function()
                    if device == "cuda" and C.apr_device_count() == 0 then
                        pending("no CUDA device")
                        return
                    end
                    local g = read_json("tests/fixtures/golden/" .. model .. "." .. prompt .. ".json")
                    local m, ctx = open("tests/fixtures/models/" .. model .. ".gguf",
                        device == "cuda" and C.APR_DEVICE_CUDA or C.APR_DEVICE_CPU)
                    local nv, np, from = g.n_vocab, #g.prompt_tokens, g.logits_from
                    local ids = ffi.new("int32_t[?]", np)
                    local want = ffi.new("int8_t[?]", np)
                    for i = 1, np do
                        ids[i - 1] = g.prompt_tokens[i]
                        want[i - 1] = (i - 1 >= from) and 1 or 0
                    end
                    local n_out = np - from
                    local logits = ffi.new("float[?]", n_out * nv)
                    local b = ffi.new("apr_batch", { n = np, ids = ids, want_logits = want })
                    assert(C.apr_decode(ctx, b, logits) == 0, ffi.string(C.apr_last_error()))
                    for k = 1, n_out do
                        local row = logits + (k - 1) * nv
                        local cos, rel = compare(row, g.prompt_logits[k], nv)
                        assert(cos >= 0.999 and rel <= 6e-2, string.format(
                            "%s position %d vs llama.cpp: cosine %.5f, max error %.4f of max", device, from + k - 1, cos, rel))
                        cos, rel = compare(row, g.exact_logits[k], nv)
                        assert(cos >= 0.999 and rel <= exact_tolerance(device, model), string.format(
                            "%s position %d vs exact: cosine %.5f, max error %.4f of max", device, from + k - 1, cos, rel))
                    end
                    -- teacher forcing: after the prompt, then after each golden id
                    local one = ffi.new("int32_t[1]")
                    local b1 = ffi.new("apr_batch", { n = 1, ids = one })
                    local last = logits + (n_out - 1) * nv
                    for step, s in ipairs(g.greedy) do
                        if s.margin > 0.05 then
                            assert.are.equal(s.id, argmax(last, nv), string.format("%s greedy step %d (margin %.3f)",
                                device, step, s.margin))
                        end
                        one[0] = s.id
                        assert(C.apr_decode(ctx, b1, logits) == 0, ffi.string(C.apr_last_error()))
                        last = logits
                    end
                    C.apr_context_free(ctx)
                    C.apr_model_free(m)
                end)
            end
        end
    end)
end
