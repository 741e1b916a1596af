-- engine_spec.lua — the generation loop's acceptance criteria on the default
-- model (a real Qwen2.5-Coder 0.5B; pending where `make model` has not run),
-- on the CPU:
--  * prefix reuse gives bit for bit the logits of a cold prefill of the
--    same tokens;
--  * batching and preemption change no result: 16 concurrent greedy
--    requests, some preempted by a small pool, give exactly the tokens each
--    gives alone;
--  * a chat's second turn reuses the first's cached blocks and answers as a
--    cold start does.
-- The tiny fixture covers the same in tests/runtime/engine/engine_test.c
-- and tests/runtime/model/context_test.c.
local apr = require "apr"
local core = require "apr.core"
local engine = require "apr.engine"
local C, ffi = core.C, core.ffi

local path = require("apr.model").default_model_path()
local present = io.open(path, "rb")
if present then present:close() end

local function collect(gen)
    local ids, texts = {}, {}
    for t in gen do
        if t.id then ids[#ids + 1] = t.id end
        texts[#texts + 1] = t.text
    end
    return ids, table.concat(texts), gen.summary
end

describe("the generation loop on the default model", function()
    local m
    setup(function()
        if present then m = assert(apr.load(path, { device = "cpu", ctx = 2048 })) end
    end)

    it("reuses a cached prefix with the logits of a cold prefill, bit for bit", function()
        if not present then return pending("run make model") end
        local ids = m:tokenize(string.rep("fn add(a: i32, b: i32) -> i32 { a + b }\n", 6), { special = true })
        assert.is_true(#ids > 70, #ids)
        local n, nv = #ids, m.info.n_vocab
        local p = ffi.new("apr_context_params")
        C.apr_context_params_default(p)
        p.n_ctx, p.n_seq = 512, 2
        local box = ffi.new("apr_context *[1]")
        assert(C.apr_context_new(m.handle, p, box) == 0, core.last_error())
        local ctx = ffi.gc(box[0], C.apr_context_free)
        local buf = ffi.new("int32_t[?]", n)
        for i = 1, n do buf[i - 1] = ids[i] end
        local want = ffi.new("int8_t[?]", n)
        for i = 0, n - 1 do want[i] = 1 end
        local seqs = ffi.new("int32_t[?]", n)
        -- cold: every token of sequence 0, every logit
        local cold = ffi.new("float[?]", n * nv)
        assert(C.apr_decode(ctx, ffi.new("apr_batch", { n = n, ids = buf, seq = seqs, want_logits = want }), cold) == 0,
            core.last_error())
        -- warm: sequence 1 takes the whole blocks, computes the rest
        local reused = ffi.new("int[1]")
        assert(C.apr_context_seq_reuse(ctx, 1, buf, n, reused) == 0, core.last_error())
        local k = reused[0]
        assert.equal(math.floor((n - 1) / 32) * 32, k)
        for i = 0, n - 1 do seqs[i] = 1 end
        local warm = ffi.new("float[?]", (n - k) * nv)
        assert(C.apr_decode(ctx, ffi.new("apr_batch", { n = n - k, ids = buf + k, seq = seqs, want_logits = want }),
            warm) == 0, core.last_error())
        local a, b = ffi.cast("uint32_t *", cold + k * nv), ffi.cast("uint32_t *", warm)
        local differ = 0
        for i = 0, (n - k) * nv - 1 do
            if a[i] ~= b[i] then differ = differ + 1 end
        end
        assert.equal(0, differ, "logits that differ")
    end)

    it("gives 16 concurrent greedy requests, some preempted, exactly their tokens alone", function()
        if not present then return pending("run make model") end
        local N, GEN = 16, 12
        local prompts = {}
        for r = 1, N do
            prompts[r] = m.tokenizer:with_bos(m:tokenize(string.format(
                "// Rust: function number %d of %d in this file, which adds %d to its argument x\nfn", r, N, r)))
        end
        local opts = { max_tokens = GEN, temperature = 0, ignore_eos = true }
        local alone = {}
        local one = assert(engine.new(m, { parallel = 1, ctx = 256 }))
        for r = 1, N do
            alone[r] = collect(assert(one:generate(prompts[r], opts)))
            assert.equal(GEN, #alone[r])
            assert.is_true(#prompts[r] + GEN > 32)
        end
        one:free()
        -- 16 sequences, a pool of 8 blocks + 15 of slack: the 16 requests
        -- need two blocks each at the end (prompts of 20-odd tokens, 12 more)
        local eng = assert(engine.new(m, { parallel = N, ctx = 256 }))
        local gens = {}
        for r = 1, N do gens[r] = assert(eng:generate(prompts[r], opts)) end
        local done = 0
        local tokens = {}
        for r = 1, N do tokens[r] = {} end
        while done < N do
            eng:wait(1000)
            eng:drain()
            done = 0
            for r = 1, N do
                if gens[r].generation.done then done = done + 1 end
            end
        end
        for r = 1, N do
            tokens[r] = collect(gens[r])
            assert.same(alone[r], tokens[r])
        end
        local st = eng:stats()
        assert.is_true(st.preemptions > 0, "no request was preempted")
        assert.equal(0, st.kv_blocks_used)
        eng:free()
    end)

    it("answers a chat's second turn from the first's cached blocks as a cold start does", function()
        if not present then return pending("run make model") end
        local messages = {
            { role = "system", content = "You are a Rust expert. " .. string.rep("Answer with code only. ", 8) },
            { role = "user", content = "Write a function that reverses a string." },
        }
        local opts = { max_tokens = 24, temperature = 0 }
        local _, first, s1 = collect(m:chat(messages, opts))
        assert.equal(0, s1.n_cached)
        messages[#messages + 1] = { role = "assistant", content = first }
        messages[#messages + 1] = { role = "user", content = "Now make it generic." }
        local _, second, s2 = collect(m:chat(messages, opts))
        assert.is_true(s2.n_cached >= 64, "cached " .. s2.n_cached)
        assert.is_true(s2.n_cached < s2.n_prompt)
        local fresh = assert(apr.load(path, { device = "cpu", ctx = 2048 }))
        local _, cold, s3 = collect(fresh:chat(messages, opts))
        assert.equal(0, s3.n_cached)
        assert.equal(s3.n_prompt, s2.n_prompt)
        assert.equal(cold, second)
    end)
end)
