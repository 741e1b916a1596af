-- kv_quality.lua — how far quantized KV caches move a model's next-token
-- distributions from the f16 cache's, teacher-forced (issue 17's
-- correctness figures; tests/lua/apr/kv_type_spec.lua runs a short version
-- in CI).
--
--   apr run tests/kv_quality.lua [--device cpu|cuda] [--positions N] [MODEL.gguf...]
--
-- Models: the golden fixtures' four and the default model (models/), or
-- those named. Each golden model is fed its five golden prompts, each
-- followed by llama.cpp's greedy continuation (prompt in chunks of 64,
-- continuation one token at a time), then repository text (docs and C,
-- through the model's tokenizer) until --positions positions are compared;
-- that text is a fixed file (--text FILE to use another);
-- other models get the text alone: the first half in chunks of 64 (the
-- GPU's prefill kernels), the rest in chunks of 8 (its decode kernels).
-- At every position: KL(P_f16 || P_type) (natural log) and whether the
-- most likely next token is the same; the agreement is also given over
-- the decisive positions (f16's top logit ahead by more than 0.05, the
-- goldens' rule: the random golden models have many near ties). Prints a
-- table; exits 1 when a q8_0 row misses the target (mean KLD <= 1e-3,
-- top-1 agreement >= 99%), 0 otherwise (q4_0's figures are reported, not
-- judged).
local args = require "apr.cli.args"
local kc = require "tests.lua.apr.kv_compare"

local parsed, opt = pcall(args.parse, {
    positional = { min = 0, max = 64 },
    options = {
        { "device", value = "NAME", choices = { "cpu", "cuda" }, default = "cpu", help = "backend to run" },
        { "positions", value = "N", type = "integer", min = 16, default = 2048, help = "positions compared per model" },
        { "threads", value = "N", type = "integer", min = 0, default = 0, help = "CPU threads (0: all)" },
        { "text", value = "FILE", help = "text to feed (default tests/fixtures/text/kv-quality.txt)" },
        { "score-from", value = "N", type = "integer", min = 1, default = 1,
          help = "score the text's positions from the N-th on (llama-perplexity -c 2N scores N+1..2N)" },
    },
}, arg)
if not parsed then
    io.stderr:write("kv_quality.lua: ", tostring(type(opt) == "table" and opt.message or opt), "\n")
    os.exit(2)
end

local GOLDEN = { "tiny-f16", "tiny-q4_k_m", "tiny-q8_0", "gqa5-q4_k_m" }
local models = {}
for i = 1, #opt do models[#models + 1] = { path = opt[i], name = opt[i]:match("([^/]+)%.gguf$") or opt[i] } end
if #models == 0 then
    for _, g in ipairs(GOLDEN) do
        models[#models + 1] = { path = "tests/fixtures/models/" .. g .. ".gguf", name = g, golden = g }
    end
    local default = require("apr.model").default_model_path()
    local f = io.open(default, "rb")
    if f then
        f:close()
        models[#models + 1] = { path = default, name = default:match("([^/]+)%.gguf$") }
    else
        io.stderr:write("kv_quality.lua: the default model is not installed (make model); skipping it\n")
    end
end

local TARGET_KLD, TARGET_AGREE = 1e-3, 0.99
-- contexts of apr pass's default size (the key offsets depend on it: context.c)
local n_ctx = math.max(4096, opt.positions + 64)
local rows, missed = {}, false
local text = kc.text(nil, opt.text)
for _, m in ipairs(models) do
    local t0 = os.clock()
    local cmp = kc.open(m.path, opt.device, { "f16", "q8_0", "q4_0" }, n_ctx, opt.threads)
    local left = opt.positions
    if m.golden then
        for _, s in ipairs(kc.golden_sequences(m.golden)) do
            cmp:sequence(s.ids, s.segments)
            left = left - #s.ids
        end
    end
    if left > 0 then
        local ids = cmp:tokenize(text)
        local seq = {}
        for i = 1, math.min(left, #ids) do seq[i] = ids[i] end
        cmp.score_from = opt.score_from
        cmp:sequence(seq, { { math.floor(#seq / 2), 64 }, { nil, 8 } })
        cmp.score_from = nil
    end
    local r = cmp:results()
    cmp:close()
    for _, t in ipairs({ "q8_0", "q4_0" }) do
        local x = r[t]
        local verdict = ""
        if t == "q8_0" then
            local kld_ok, agree_ok = x.kld <= TARGET_KLD, x.agree >= TARGET_AGREE
            verdict = string.format("KLD %s, top-1 %s (decisive %s)", kld_ok and "met" or "MISSED",
                agree_ok and "met" or "MISSED", x.decisive_agree >= TARGET_AGREE and "met" or "MISSED")
            missed = missed or not (kld_ok and agree_ok)
        end
        rows[#rows + 1] = { m.name, t, x.positions, x.kld, x.max_kld, x.agree, x.decisive, x.decisive_agree, verdict }
        io.stdout:write(string.format("%s %s: %d positions, mean KLD %.3g (max %.3g), top-1 agreement %.2f%% " ..
            "(%.2f%% of %d decisive) %s\n", m.name, t, x.positions, x.kld, x.max_kld, 100 * x.agree,
            100 * x.decisive_agree, x.decisive, verdict))
        io.stdout:flush()
    end
    io.stderr:write(string.format("  (%s: %.0f s of CPU)\n", m.name, os.clock() - t0))
end

io.stdout:write(string.format("\nKV cache vs f16 on %s, contexts of %d (target for q8_0: mean KLD <= %g, top-1 >= %.0f%%)\n\n",
    opt.device, n_ctx, TARGET_KLD, 100 * TARGET_AGREE))
io.stdout:write("| model | KV | positions | mean KLD | max KLD | top-1 agreement | decisive positions: agreement | q8_0 target |\n" ..
    "|---|---|---|---|---|---|---|---|\n")
for _, r in ipairs(rows) do
    io.stdout:write(string.format("| %s | %s | %d | %.2e | %.3g | %.2f%% | %.2f%% of %d | %s |\n", r[1], r[2], r[3], r[4],
        r[5], 100 * r[6], 100 * r[8], r[7], r[9]))
end
os.exit(missed and 1 or 0)
