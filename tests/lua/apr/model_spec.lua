-- model_spec.lua — apr.load and the model object: tokenize, generate (greedy,
-- seeded, stop strings, limits, context reuse), forward, chat, bad input.
-- Runs on the tiny synthetic fixture (random weights: the text is noise, but
-- every property below holds for any weights).
local apr = require "apr"

local TINY = "tests/fixtures/models/tiny-q8_0.gguf"

-- The vocabulary-only GGUF, decompressed once into a temporary file when the
-- checkout holds only its .zst.
local function vocab_path()
    local plain = "tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf"
    local f = io.open(plain, "rb")
    if f then f:close() return plain end
    local out = os.tmpname()
    assert(os.execute(string.format("zstd -q -d -f -o %s %s.zst", out, plain)) == 0, "zstd failed")
    return out
end

local function collect(gen)
    local ids, texts = {}, {}
    for t in gen do
        ids[#ids + 1] = t.id
        texts[#texts + 1] = t.text
    end
    return ids, table.concat(texts), gen.summary
end

local function argmax(row)
    local best, at = -math.huge, nil
    for i = 1, #row do
        if row[i] > best then best, at = row[i], i end
    end
    return at - 1, best
end

describe("apr.load", function()
    it("returns nil and a message naming a missing file", function()
        local m, err = apr.load("/nonexistent/model.gguf")
        assert.is_nil(m)
        assert.truthy(err:find("/nonexistent/model.gguf", 1, true))
    end)

    it("rejects unknown devices and bad option types as caller mistakes", function()
        assert.has_error(function() apr.load(TINY, { device = "tpu" }) end)
        assert.has_error(function() apr.load(TINY, { ctx = "big" }) end)
    end)

    it("runs on the GPU with gpu = true, or fails saying there is none", function()
        local m, err = apr.load(TINY, { gpu = true })
        if m then
            assert.equal("cuda", m.info.device)
        else
            assert.truthy(err:find(TINY, 1, true), err)
            assert.truthy(err:find("CUDA", 1, true), err)
        end
        local cpu = assert(apr.load(TINY, { device = "cpu" }))
        assert.equal("cpu", cpu.info.device)
    end)

    it("loads just the tokenizer of a file without tensors (vocab_only)", function()
        local m = assert(apr.load(vocab_path(), { vocab_only = true }))
        local ids = m:tokenize("Hello world")
        assert.same({ 9707, 1879 }, ids)
        assert.equal("Hello world", m:detokenize(ids))
        assert.same({ 151644 }, m:tokenize("<|im_start|>", { special = true }))
        assert.is_true(#m:tokenize("<|im_start|>") > 1)
        assert.has_error(function() m:generate("x") end)
    end)
end)

describe("a model", function()
    local m
    setup(function() m = assert(apr.load(TINY, { ctx = 512, threads = 2 })) end)

    it("reports the hyperparameters of its file", function()
        assert.equal("qwen2", m.info.arch)
        assert.equal(2, m.info.n_layer)
        assert.equal(256, m.info.n_embd)
        assert.equal(2048, m.info.n_vocab)
        assert.equal(512, m.n_ctx)
    end)

    it("generates greedily: each token is the argmax of forward's logits", function()
        local prompt = m:tokenize("Hello, world")
        local ids = collect(m:generate(prompt, { max_tokens = 6, temperature = 0, ignore_eos = true }))
        assert.equal(6, #ids)
        for k = 1, #ids do
            local seq = {}
            for i, id in ipairs(prompt) do seq[i] = id end
            for i = 1, k - 1 do seq[#seq + 1] = ids[i] end
            local row = m:forward(seq):row(-1)
            local best, best_logit = argmax(row)
            -- Batched and one-token passes may round differently: a differing
            -- choice must be a near-tie.
            if best ~= ids[k] then assert.near(best_logit, row[ids[k] + 1], 1e-3) end
        end
    end)

    it("repeats a sampled generation for the same seed, not for another", function()
        local opts = { max_tokens = 24, temperature = 1.0, top_p = 0.95, seed = 1234, ignore_eos = true }
        local a = collect(m:generate("Once upon a time", opts))
        local b = collect(m:generate("Once upon a time", opts))
        opts.seed = 4321
        local c = collect(m:generate("Once upon a time", opts))
        assert.same(a, b)
        assert.are_not.same(a, c)
    end)

    it("reports the raw log-probabilities of each step when asked", function()
        local gen = m:generate("Hello", { max_tokens = 3, temperature = 0, ignore_eos = true, logprobs = 4 })
        for t in gen do
            assert.equal(4, #t.top_logprobs)
            -- greedy: the chosen token is the likeliest one
            assert.equal(t.id, t.top_logprobs[1].id)
            assert.near(t.top_logprobs[1].logprob, t.logprob, 1e-6)
            assert.is_true(t.logprob <= 0)
            for i = 2, 4 do assert.is_true(t.top_logprobs[i].logprob <= t.top_logprobs[i - 1].logprob) end
        end
    end)

    it("tokenizes a raw prompt as plain text", function()
        local _, _, special = collect(m:generate("<|im_start|>", { max_tokens = 1, temperature = 0 }))
        local _, _, raw = collect(m:generate("<|im_start|>", { max_tokens = 1, temperature = 0, raw = true }))
        assert.equal(1, special.n_prompt)
        assert.is_true(raw.n_prompt > 1)
    end)

    it("returns the logits of every position as an F32 [n_vocab, n] tensor", function()
        local ids = m:tokenize("abc def")
        local t = m:forward(ids)
        assert.same({ 2048, #ids }, t:shape())
        assert.equal("F32", t:dtype())
        assert.equal(2048, #t:row(-1))
        local s = t:stats()
        assert.equal(0, s.nan)
        assert.is_true(s.std > 0)
    end)

    it("stops at max_tokens with finish_reason length", function()
        local ids, _, s = collect(m:generate("abc", { max_tokens = 5, temperature = 0, ignore_eos = true }))
        assert.equal(5, #ids)
        assert.equal("length", s.finish_reason)
        assert.equal("max_tokens", s.stop_reason)
        assert.equal(5, s.n_generated)
        assert.is_true(s.timings.decode_tps > 0 and s.timings.prompt_tps > 0)
    end)

    it("ends at the end-of-generation token without emitting its text", function()
        local eos = m.tokenizer.eos
        local ids, text, s = collect(m:generate("abc", { temperature = 0, logit_bias = { [eos] = 100 } }))
        assert.same({ eos }, ids)
        assert.equal("", text)
        assert.equal("stop", s.finish_reason)
        assert.equal("eos", s.stop_reason)
    end)

    it("stops before a stop string, even one spanning tokens, and emits none of it", function()
        local opts = { max_tokens = 40, temperature = 0, ignore_eos = true }
        local _, full = collect(m:generate("The", opts))
        assert.is_true(#full >= 12, "need some text to cut")
        local stop = full:sub(6, 11)
        local first = full:find(stop, 1, true)
        opts.stop = { stop }
        local _, text, s = collect(m:generate("The", opts))
        assert.equal(full:sub(1, first - 1), text)
        assert.equal("stop", s.finish_reason)
        assert.equal("stop", s.stop_reason)
    end)

    it("reuses the cached blocks of a prompt and answer that the next prompt extends", function()
        local prompt = m:tokenize(string.rep("The quick brown fox jumps over the lazy dog. ", 8))
        local opts = { max_tokens = 20, temperature = 0, ignore_eos = true }
        local ids1 = collect(m:generate(prompt, opts))
        local next_prompt = {}
        for _, id in ipairs(prompt) do next_prompt[#next_prompt + 1] = id end
        for _, id in ipairs(ids1) do next_prompt[#next_prompt + 1] = id end
        for _, id in ipairs(m:tokenize(" jumps")) do next_prompt[#next_prompt + 1] = id end
        local ids2, _, s = collect(m:generate(next_prompt, opts))
        -- the sequence held all but the last generated token: all of them
        -- come back from the prefix cache (whole blocks, then the partly
        -- filled last one)
        assert.equal(#prompt + #ids1 - 1, s.n_cached)
        assert.is_true(s.timings.prompt_tps > 0)
        -- and the answer is a cold start's, token for token
        local fresh = assert(apr.load(TINY, { ctx = 512, threads = 2 }))
        local ids3, _, s3 = collect(fresh:generate(next_prompt, opts))
        assert.equal(0, s3.n_cached)
        assert.same(ids3, ids2)
    end)

    it("keeps the ids of a text prompt and its answer when the next text extends them", function()
        local text = string.rep("Once upon a time there was a tiny model. ", 6)
        local ids, _, s1 = collect(m:generate(text, { max_tokens = 12, temperature = 0, ignore_eos = true }))
        -- the answer's bytes as the tokens have them (the random model's
        -- text may hold control tokens, which a reader does not see)
        local answer = {}
        for i, id in ipairs(ids) do answer[i] = m.tokenizer:piece(id) end
        local _, _, s = collect(m:generate(text .. table.concat(answer) .. " The end.",
            { max_tokens = 2, temperature = 0, ignore_eos = true }))
        -- the text's ids and the answer's, as they were: all that the first
        -- generation's sequence held is reused
        assert.equal(s1.n_prompt + #ids - 1, s.n_cached)
    end)

    it("ends a generation left unfinished when the next one starts", function()
        local gen = m:generate("abc", { max_tokens = 400, temperature = 0, ignore_eos = true })
        assert.is_table(gen())
        local ids = collect(m:generate("abc", { max_tokens = 3, temperature = 0, ignore_eos = true }))
        assert.equal(3, #ids)
        assert.equal("cancelled", gen.generation.finish_reason)
    end)

    it("fails clearly on an empty prompt", function()
        assert.has_error(function() m:generate("") end, "generate: the prompt is empty")
        assert.has_error(function() m:generate({}) end, "generate: the prompt is empty")
    end)

    it("fails naming both sizes when the prompt does not fit the context", function()
        local small = assert(apr.load(TINY, { ctx = 16 }))
        local ok, err = pcall(small.generate, small, string.rep("word ", 40))
        assert.is_false(ok)
        assert.truthy(err:find("context holds 16", 1, true), err)
        assert.truthy(err:match("prompt is %d+ tokens"), err)
    end)

    it("fails naming an id outside the vocabulary", function()
        local ok, err = pcall(m.generate, m, { 1, 2, 5000 })
        assert.is_false(ok)
        assert.truthy(err:find("5000", 1, true), err)
        -- the context is still usable
        local ids = collect(m:generate({ 1, 2, 3 }, { max_tokens = 2, temperature = 0, ignore_eos = true }))
        assert.equal(2, #ids)
    end)

    it("answers a chat through the model's template", function()
        local prompt = m:render({ { role = "user", content = "Hi" } })
        assert.truthy(prompt:find("<|im_start|>user\nHi<|im_end|>", 1, true))
        assert.equal("<|im_start|>assistant\n", prompt:sub(-#"<|im_start|>assistant\n"))
        local ids, _, s = collect(m:chat({ { role = "user", content = "Hi" } }, { max_tokens = 3, temperature = 0 }))
        assert.is_true(#ids >= 1 and #ids <= 3)
        assert.equal(#m:tokenize(prompt, { special = true }), s.n_prompt)
    end)
end)

describe("model objects", function()
    it("are collected with their contexts in any order without crashing", function()
        for _ = 1, 20 do
            local m = assert(apr.load(TINY, { ctx = 64 }))
            for _ in m:generate("hi", { max_tokens = 2, temperature = 0 }) do end
            m = nil   -- luacheck: ignore
            collectgarbage()
            collectgarbage()
        end
    end)
end)

describe("the default model", function()
    local path = require("apr.model").default_model_path()
    local present = io.open(path, "rb")
    if present then present:close() end

    it("writes Rust when asked for a Rust quicksort", function()
        if not present then return pending("run make model") end
        local m = assert(apr.load(path, { ctx = 1024 }))
        local _, text, s = collect(m:chat({ { role = "user", content = "Write a Rust quicksort" } },
            { max_tokens = 320, temperature = 0 }))
        assert.truthy(text:find("fn ", 1, true), text)
        assert.truthy(text:find("{", 1, true), text)
        assert.truthy(text:find("Vec<", 1, true) or text:find("&mut [", 1, true), text)
        assert.truthy(text:find("```rust", 1, true) or text:find("let ", 1, true), text)
        assert.is_nil(text:find("def quicksort", 1, true))
        assert.is_true(s.n_generated > 20)
    end)
end)
