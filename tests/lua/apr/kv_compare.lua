-- kv_compare.lua — a model's next-token distributions with quantized KV
-- caches against the same model with an f16 cache, teacher-forced (test
-- support for kv_type_spec.lua and tests/kv_quality.lua).
--
-- One context per KV type, all fed the same token sequences in the same
-- chunks, in lockstep; after each chunk the logits of every position are
-- compared with the f16 context's: the KL divergence KL(P_f16 || P_type)
-- of the next-token distributions (natural log, in double) and whether the
-- most likely token is the same, at every position and at the decisive
-- ones (where f16's top logit leads the second by more than 0.05, the
-- golden fixtures' rule for greedy steps: on random test models many
-- positions are near ties that any rounding flips). Chunks of several sizes take every
-- kernel path of the CUDA backend: 64 tokens its prefill kernels, 8 its
-- tensor-core decode products with split attention, 1 the dp4a products.
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

M.TYPES = { f16 = C.APR_F16, q8_0 = C.APR_Q8_0, q4_0 = C.APR_Q4_0 }

local MAX_CHUNK = 64

local function check(st, what)
    if st ~= 0 then error(string.format("%s: %s", what, ffi.string(C.apr_last_error())), 2) end
end

-- open(path, device, types, n_ctx) -> a comparison: the model loaded once
-- on device ("cpu" or "cuda"), a context of n_ctx tokens per KV type
-- (types: names, "f16" first).
function M.open(path, device, types, n_ctx, threads)
    local mp = ffi.new("apr_model_params")
    C.apr_model_params_default(mp)
    mp.device = device == "cuda" and C.APR_DEVICE_CUDA or C.APR_DEVICE_CPU
    mp.n_threads = threads or 0
    local mbox = ffi.new("apr_model *[1]")
    check(C.apr_model_load(path, mp, mbox), "load " .. path)
    local self = { model = mbox[0], types = types, ctx = {}, logits = {}, stats = {} }
    local info = ffi.new("apr_model_info")
    C.apr_model_get_info(self.model, info)
    self.n_vocab = info.n_vocab
    for i, t in ipairs(types) do
        local cp = ffi.new("apr_context_params")
        C.apr_context_params_default(cp)
        cp.n_ctx, cp.n_batch, cp.kv_type = n_ctx, MAX_CHUNK, M.TYPES[t]
        local cbox = ffi.new("apr_context *[1]")
        check(C.apr_context_new(self.model, cp, cbox), t .. " context of " .. n_ctx)
        self.ctx[i] = cbox[0]
        self.logits[i] = ffi.new("float[?]", MAX_CHUNK * self.n_vocab)
        self.stats[t] = { positions = 0, kld = 0, max_kld = 0, agree = 0, decisive = 0, decisive_agree = 0 }
    end
    self.ids = ffi.new("int32_t[?]", MAX_CHUNK)
    self.want = ffi.new("int8_t[?]", MAX_CHUNK)
    for i = 0, MAX_CHUNK - 1 do self.want[i] = 1 end
    self.batch = ffi.new("apr_batch")
    return setmetatable(self, { __index = M })
end

function M:close()
    for i = 1, #self.types do C.apr_context_free(self.ctx[i]) end
    C.apr_model_free(self.model)
end

-- KL(P || Q), whether the argmaxes agree, and P's margin (top logit minus
-- the second), for two rows of logits. With e_i = exp(p_i - max p):
-- KL = sum e_i (p_i - q_i) / S_p - lse(p) + lse(q).
local function compare_row(p, q, n)
    local mp, mq, ap, aq, second = -math.huge, -math.huge, 0, 0, -math.huge
    for i = 0, n - 1 do
        local a, b = p[i], q[i]
        if a > mp then
            second = mp
            mp, ap = a, i
        elseif a > second then
            second = a
        end
        if b > mq then mq, aq = b, i end
    end
    local sp, sq, acc = 0, 0, 0
    local exp = math.exp
    for i = 0, n - 1 do
        local a, b = p[i], q[i]
        local e = exp(a - mp)
        sp = sp + e
        sq = sq + exp(b - mq)
        acc = acc + e * (a - b)
    end
    local kld = acc / sp - (mp + math.log(sp)) + (mq + math.log(sq))
    if kld < 0 then kld = 0 end  -- rounding when the rows are equal
    return kld, ap == aq, mp - second
end

-- Feeds ids[first..last] (1-based) to every context in chunks of `chunk`
-- tokens and compares each position's distribution with f16's (from
-- ids[self.score_from] on, when that is set: the positions before it are
-- context only, as llama-perplexity scores a chunk's second half).
function M:feed(ids, first, last, chunk)
    local nv = self.n_vocab
    local i = first
    while i <= last do
        local n = math.min(chunk, MAX_CHUNK, last - i + 1)
        for k = 0, n - 1 do self.ids[k] = ids[i + k] end
        local b = self.batch
        b.n, b.ids, b.want_logits = n, self.ids, self.want
        for c = 1, #self.types do
            check(C.apr_decode(self.ctx[c], b, self.logits[c]), self.types[c] .. " decode")
        end
        for c = 2, #self.types do
            local st = self.stats[self.types[c]]
            for k = math.max(0, math.min(n, (self.score_from or 1) - i)), n - 1 do
                local kld, same, margin = compare_row(self.logits[1] + k * nv, self.logits[c] + k * nv, nv)
                st.positions = st.positions + 1
                st.kld = st.kld + kld
                if kld > st.max_kld then st.max_kld = kld end
                if same then st.agree = st.agree + 1 end
                if margin > 0.05 then
                    st.decisive = st.decisive + 1
                    if same then st.decisive_agree = st.decisive_agree + 1 end
                end
            end
        end
        i = i + n
    end
end

-- A new sequence: every context forgets what it holds.
function M:reset()
    for c = 1, #self.types do check(C.apr_context_seq_truncate(self.ctx[c], 0, 0), "truncate") end
end

-- One sequence of ids in segments { count, chunk }: the first `count` ids
-- in chunks of `chunk`, and so on; the last segment's count may be nil
-- (the rest).
function M:sequence(ids, segments)
    self:reset()
    local at = 1
    for _, seg in ipairs(segments) do
        local last = seg[1] and math.min(#ids, at + seg[1] - 1) or #ids
        if last >= at then self:feed(ids, at, last, seg[2]) end
        at = last + 1
    end
end

-- The results: per type, positions, mean KL divergence, its largest value,
-- the top-1 agreement (a fraction), and the same over the decisive
-- positions (their count too).
function M:results()
    local out = {}
    for c = 2, #self.types do
        local t = self.types[c]
        local st = self.stats[t]
        out[t] = { positions = st.positions, kld = st.kld / math.max(st.positions, 1), max_kld = st.max_kld,
                   agree = st.agree / math.max(st.positions, 1), decisive = st.decisive,
                   decisive_agree = st.decisive_agree / math.max(st.decisive, 1) }
    end
    return out
end

-- The token ids of text through the model's own tokenizer.
function M:tokenize(text)
    local tok = require("apr.tokenizer").wrap(C.apr_model_tokenizer(self.model), self.model)
    return tok:tokenize(text, { special = false })
end

-- Text for the long sequences, up to max_bytes: a fixed file (default:
-- tests/fixtures/text/kv-quality.txt, 48 KB of apr's own docs and C as they
-- stood on 2026-12-06, so figures of different commits compare, and the
-- same file can go to llama.cpp's llama-perplexity).
function M.text(max_bytes, path)
    local f = assert(io.open(path or "tests/fixtures/text/kv-quality.txt", "rb"))
    local text = f:read("*a")
    f:close()
    return max_bytes and text:sub(1, max_bytes) or text
end

-- The golden fixtures' sequences of a model: each prompt followed by its
-- greedy continuation, the prompt in chunks of 64, the continuation one
-- token at a time.
function M.golden_sequences(model)
    local cjson = require "cjson"
    local seqs = {}
    for _, prompt in ipairs({ "hello", "chat", "code", "unicode", "long" }) do
        local f = io.open("tests/fixtures/golden/" .. model .. "." .. prompt .. ".json", "rb")
        if f then
            local g = cjson.decode(f:read("*a"))
            f:close()
            local ids = {}
            for _, id in ipairs(g.prompt_tokens) do ids[#ids + 1] = id end
            local np = #ids
            for _, s in ipairs(g.greedy) do ids[#ids + 1] = s.id end
            seqs[#seqs + 1] = { name = prompt, ids = ids, segments = { { np, 64 }, { nil, 1 } } }
        end
    end
    return seqs
end

return M
