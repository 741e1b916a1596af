-- model.lua — apr.load: a model, its tokenizer, and text generation.
--
--   local m = assert(apr.load("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", { ctx = 4096 }))
--   for t in m:generate("fn main() {", { max_tokens = 32 }) do io.write(t.text) end
--   for t in m:chat({ { role = "user", content = "Hi" } }) do io.write(t.text) end
--   local logits = m:forward(m:tokenize("Hello"))   -- F32 [n_vocab, n]; logits:row(-1)
--
-- Generation goes through the engine (apr.engine over runtime/engine/
-- engine.c), one of one sequence per model object, made on first use with
-- opts.ctx token slots: the loop that samples, applies penalties, stop
-- tokens and max_tokens and reuses cached prompt prefixes is the server's.
-- Its prefix cache keeps the blocks of earlier prompts and answers, so the
-- next turn of a chat computes only what is new. A prompt given as text
-- that continues the previous prompt and answer exactly keeps their token
-- ids (only the new text is tokenized), so the cache finds them however
-- re-tokenizing the answer would split it. forward() has a context of its
-- own. docs/lua-api.md ("Models") is the reference.
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local engine = require "apr.engine"
local trace = require "apr.trace"
local TENSOR_ALLOC = trace.name("tensor allocation")  -- a context's buffers and KV cache

local M = {}

local Model = {}
Model.__index = Model

-- Without opts.ctx a context gets the model's training length capped here:
-- Qwen2.5's 32768 slots would take ~0.9 GB of f16 KV cache for the 1.5B
-- model, far more than a CLI prompt needs. opts.ctx raises it.
M.DEFAULT_CTX = 4096

-- What a chat falls back to when the file has no tokenizer.chat_template.
M.CHATML_TEMPLATE = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

local DEVICES = { auto = C.APR_DEVICE_AUTO, cpu = C.APR_DEVICE_CPU, cuda = C.APR_DEVICE_CUDA }
local DEVICE_NAMES = { [tonumber(C.APR_DEVICE_AUTO)] = "auto", [tonumber(C.APR_DEVICE_CPU)] = "cpu",
                       [tonumber(C.APR_DEVICE_CUDA)] = "cuda" }

local model_box = ffi.new("apr_model *[1]")
local context_box = ffi.new("apr_context *[1]")

-- ------------------------------------------------------------------ loading

local function check_opts(opts)
    local function typed(name, t)
        if opts[name] ~= nil and type(opts[name]) ~= t then
            error(string.format("apr.load: option %s must be a %s, got %s", name, t, type(opts[name])), 4)
        end
    end
    typed("device", "string") typed("threads", "number") typed("ctx", "number")
    typed("vram_budget", "number") typed("gpu_index", "number")
    if opts.device and not DEVICES[opts.device] then
        error(string.format("apr.load: device must be auto, cpu or cuda, got '%s'", opts.device), 4)
    end
    if opts.gpu and opts.device and opts.device ~= "cuda" then
        error(string.format("apr.load: gpu = true contradicts device = '%s'", opts.device), 4)
    end
    if opts.ctx and (opts.ctx < 1 or opts.ctx ~= math.floor(opts.ctx)) then
        error(string.format("apr.load: ctx must be a whole number >= 1, got %s", tostring(opts.ctx)), 4)
    end
end

local function info_table(handle)
    local i = ffi.new("apr_model_info")
    C.apr_model_get_info(handle, i)
    local function str(p) return p ~= nil and ffi.string(p) or "" end
    return {
        arch = str(i.arch), name = str(i.name),
        n_layer = i.n_layer, n_embd = i.n_embd, n_ff = i.n_ff, n_head = i.n_head,
        n_head_kv = i.n_head_kv, head_dim = i.head_dim, n_vocab = i.n_vocab,
        n_ctx_train = i.n_ctx_train, rope_base = i.rope_base, rms_eps = i.rms_eps,
        device = DEVICE_NAMES[tonumber(i.device)] or tostring(i.device),
        weight_bytes = tonumber(i.weight_bytes),
    }
end

-- load(path, opts) -> model, or nil and a message naming the file.
-- opts: device ("auto" | "cpu" | "cuda"), gpu (true: "cuda", failing when
-- there is none), gpu_index, threads, ctx (context slots), vocab_only (just
-- the tokenizer and metadata), vram_budget (bytes).
function M.load(path, opts)
    opts = opts or {}
    if type(path) ~= "string" then error("apr.load: path must be a string", 2) end
    check_opts(opts)
    local p = ffi.new("apr_model_params")
    C.apr_model_params_default(p)
    p.device = DEVICES[opts.gpu and "cuda" or opts.device or "auto"]
    p.gpu_index = opts.gpu_index or 0
    p.vocab_only = opts.vocab_only and 1 or 0
    p.n_threads = opts.threads or 0
    p.vram_budget = opts.vram_budget or 0
    local status = C.apr_model_load(path, p, model_box)
    if status ~= 0 then return core.failure(status) end
    return M.wrap(model_box[0], path, opts)
end

-- wrap(handle, path [, opts]) -> model: the model object around an
-- apr_model * loaded elsewhere (`apr serve` loads on a worker thread so its
-- event loop keeps answering). It takes ownership: the model is freed when
-- the object is collected. opts as for load (ctx, vocab_only).
function M.wrap(handle, path, opts)
    opts = opts or {}
    handle = ffi.gc(ffi.cast("apr_model *", handle), C.apr_model_free)
    local info = info_table(handle)
    local self = setmetatable({
        handle = handle,
        path = path,
        info = info,
        vocab_only = opts.vocab_only and true or false,
        tokenizer = require("apr.tokenizer").wrap(C.apr_model_tokenizer(handle), handle),
        n_ctx = opts.ctx or math.min(info.n_ctx_train > 0 and info.n_ctx_train or M.DEFAULT_CTX, M.DEFAULT_CTX),
        -- The ids of the last generation's prompt and of the tokens it
        -- generated but its last (what its sequence held at the end), and
        -- the bytes they stand for as pieces to concatenate (the string
        -- prompt, then each of those tokens' bytes), when known:
        -- cached_special says how that prompt was tokenized.
        cached = {},
        cached_pieces = nil,
        cached_special = nil,
    }, Model)
    local template = C.apr_model_chat_template(handle)
    self.chat_template = template ~= nil and ffi.string(template) or nil
    return self
end

-- ------------------------------------------------------------------ text

-- tokenize(text, { special = true }) -> Lua array of ids. special: control
-- tokens written in the text ("<|im_start|>") become those tokens.
function Model:tokenize(text, opts)
    return self.tokenizer:tokenize(text, opts)
end

function Model:detokenize(ids)
    return self.tokenizer:detokenize(ids)
end

-- The text of a special token (bos/eos), or "" when the vocabulary has none.
function Model:token_text(id)
    if not id or id < 0 then return "" end
    return self.tokenizer:token_text(id) or ""
end

-- ------------------------------------------------------------------ context

function Model:_check_weights(level)
    if self.vocab_only then
        error(string.format("%s was loaded with vocab_only: it has no weights to run", self.path), level + 1)
    end
end

-- The engine generation runs on (one sequence of n_ctx slots).
function Model:_engine()
    self:_check_weights(3)
    if not self.engine then
        local eng, err = engine.new(self, { parallel = 1, ctx = self.n_ctx })
        if not eng then error(err, 3) end
        self.engine = eng
        self.n_ctx = eng.n_ctx
    end
    return self.engine
end

-- The context forward() decodes in.
function Model:_context()
    self:_check_weights(3)
    if not self.ctx then
        local p = ffi.new("apr_context_params")
        C.apr_context_params_default(p)
        p.n_ctx = self.n_ctx
        trace.begin(TENSOR_ALLOC)
        local status = C.apr_context_new(self.handle, p, context_box)
        trace.finish(TENSOR_ALLOC)
        if status ~= 0 then
            local _, msg = core.failure(status, 3)
            error(msg, 3)
        end
        -- The context holds its own reference on the model (apr.h), so
        -- the two finalizers may run in either order (at exit they run in
        -- no particular one).
        self.ctx = ffi.gc(context_box[0], C.apr_context_free)
        self.n_ctx = C.apr_context_n_ctx(self.ctx)
        self.n_batch = p.n_batch > 0 and p.n_batch or 512
    end
    return self.ctx
end

local batch = ffi.new("apr_batch")

-- Decodes ids[1..n] into sequence 0 of forward's context (emptied first),
-- in batches of n_batch, every id's logits into out. Returns true, or nil
-- and the message; "cancelled" when Ctrl+C stopped it.
function Model:_decode_all(ids, out)
    local ctx = self:_context()
    C.apr_context_seq_truncate(ctx, 0, 0)
    local n_vocab = self.info.n_vocab
    local buf = ffi.new("int32_t[?]", math.min(self.n_batch, #ids))
    local flags = ffi.new("int8_t[?]", self.n_batch)
    local i = 1
    while i <= #ids do
        local n = math.min(self.n_batch, #ids - i + 1)
        for k = 0, n - 1 do
            buf[k] = ids[i + k]
            flags[k] = 1
        end
        batch.n, batch.ids, batch.pos, batch.seq, batch.want_logits = n, buf, nil, nil, flags
        local status = C.apr_decode(ctx, batch, out + (i - 1) * n_vocab)
        if status ~= 0 then
            C.apr_context_seq_truncate(ctx, 0, 0)
            if status == C.APR_ERR_CANCELLED then return nil, "cancelled" end
            return core.failure(status)
        end
        i = i + n
    end
    return true
end

-- ------------------------------------------------------------------ forward

-- forward(ids) -> an apr.tensor F32 [n_vocab, n]: row i (1-based, -1 the
-- last) holds the logits after ids[1..i], all computed (no cache reuse).
function Model:forward(ids)
    if type(ids) ~= "table" or #ids == 0 then error("forward: ids must be a non-empty array of token ids", 2) end
    for i, id in ipairs(ids) do
        if type(id) ~= "number" or id ~= math.floor(id) then
            error(string.format("forward: ids[%d] is not a whole number: %s", i, tostring(id)), 2)
        end
    end
    self:_check_weights(2)
    if #ids > self.n_ctx then
        error(string.format("forward: %d ids do not fit the context of %d tokens", #ids, self.n_ctx), 2)
    end
    local n_vocab = self.info.n_vocab
    local t, err = require("apr.tensor").new("F32", { n_vocab, #ids })
    if not t then error(err, 2) end
    local ok, msg = self:_decode_all(ids, ffi.cast("float *", t:data()))
    if not ok then error(msg == "cancelled" and "forward: interrupted" or msg, 2) end
    return t
end

-- ------------------------------------------------------------------ generation

local GEN_OPTS = {
    max_tokens = "number", temperature = "number", top_k = "number", top_p = "number", min_p = "number",
    repeat_penalty = "number", presence_penalty = "number", frequency_penalty = "number",
    penalty_last_n = "number", seed = "number", stop = "table", raw = "boolean", special = "boolean",
    ignore_eos = "boolean", logit_bias = "table", logprobs = "number",
}

local function check_gen_opts(opts, level)
    for k, v in pairs(opts) do
        local t = GEN_OPTS[k]
        if not t then error(string.format("generate: unknown option '%s'", tostring(k)), level + 1) end
        if type(v) ~= t then
            error(string.format("generate: option %s must be a %s, got %s", k, t, type(v)), level + 1)
        end
    end
    if opts.max_tokens and (opts.max_tokens < 0 or opts.max_tokens ~= math.floor(opts.max_tokens)) then
        error("generate: max_tokens must be a whole number >= 0", level + 1)
    end
    if opts.logprobs and (opts.logprobs < 0 or opts.logprobs > C.APR_ENGINE_MAX_TOP or
                          opts.logprobs ~= math.floor(opts.logprobs)) then
        error(string.format("generate: logprobs must be a whole number in [0, %d]", C.APR_ENGINE_MAX_TOP), level + 1)
    end
end

-- A seed for generation when the caller gives none: different per call, and
-- reported in the summary so the run can be repeated.
local seed_counter = 0
local function fresh_seed()
    seed_counter = seed_counter + 1
    return (os.time() * 1000003 + math.floor(os.clock() * 1e6) + seed_counter * 7919) % 4294967296
end

-- The prompt as ids: a string is tokenized (control tokens in it are
-- recognised unless opts.special == false or opts.raw), with BOS first
-- unless raw as the tokenizer says (tokenizer:with_bos).
function Model:_prompt_ids(prompt, opts, level)
    local ids
    if type(prompt) == "string" then
        if prompt == "" then error("generate: the prompt is empty", level + 1) end
        local special = opts.special ~= false and not opts.raw
        local known = self.cached_pieces and self.cached_special == special and table.concat(self.cached_pieces)
        if known and #prompt > #known and prompt:sub(1, #known) == known then
            -- The prompt continues exactly the last prompt and its answer
            -- as generated: keep those ids and tokenize only the new text,
            -- so the next turn of a chat finds the answer's blocks in the
            -- prefix cache, however re-tokenizing it would split.
            local tail, err = self:tokenize(prompt:sub(#known + 1), { special = special })
            if not tail then error(err, level + 1) end
            ids = {}
            for i, id in ipairs(self.cached) do ids[i] = id end
            for _, id in ipairs(tail) do ids[#ids + 1] = id end
            return ids
        end
        local err
        ids, err = self:tokenize(prompt, { special = special })
        if not ids then error(err, level + 1) end
    elseif type(prompt) == "table" then
        ids = {}
        for i, id in ipairs(prompt) do ids[i] = id end
    else
        error("generate: the prompt must be a string or an array of token ids", level + 1)
    end
    if not opts.raw then self.tokenizer:with_bos(ids) end
    if #ids == 0 then error("generate: the prompt is empty", level + 1) end
    for i, id in ipairs(ids) do
        if type(id) ~= "number" or id ~= math.floor(id) then
            error(string.format("generate: prompt id %d is not a whole number: %s", i, tostring(id)), level + 1)
        end
    end
    return ids
end

-- generate(prompt, opts) -> an iterator of { id =, text = } (a callable
-- object: `for t in m:generate(...)`). t.text is the text that became final
-- with this token (possibly ""); concatenated they are the completion. With
-- opts.logprobs = n (at most 20), t.logprob and t.top_logprobs ({ id =,
-- logprob = }, n of them) give the raw model's log-probabilities at that
-- step. After the loop, the iterator's `summary` holds finish_reason
-- ("stop": end of generation token or stop string; "length": max_tokens or
-- the context is full; "interrupted": Ctrl+C), stop_reason (eos, stop,
-- max_tokens, context, interrupted), n_prompt, n_cached (prompt tokens the
-- prefix cache supplied: whole blocks of 32 of an earlier prompt and
-- answer), n_generated, seed, text, and timings { prompt_s (to the first
-- token), prompt_tps, decode_s, decode_tps }. Failures (the prompt does not
-- fit, an id out of range, non-finite logits) raise errors. One generation
-- runs at a time: starting one ends one left unfinished.
function Model:generate(prompt, opts)
    opts = opts or {}
    check_gen_opts(opts, 2)
    local eng = self:_engine()
    local ids = self:_prompt_ids(prompt, opts, 2)
    if #ids >= self.n_ctx then
        error(string.format("the prompt is %d tokens but the context holds %d (one more is needed to generate): use a larger ctx",
            #ids, self.n_ctx), 2)
    end
    if self.current and not self.current.done then self.current:cancel() end
    local seed = opts.seed or fresh_seed()
    local summary = { seed = seed }
    if opts.max_tokens == 0 then
        summary.finish_reason, summary.stop_reason = "length", "max_tokens"
        summary.n_prompt, summary.n_cached, summary.n_generated, summary.text = #ids, 0, 0, ""
        summary.timings = { prompt_s = 0, prompt_tps = 0, decode_s = 0, decode_tps = 0 }
        return setmetatable({ summary = summary }, { __call = function() return nil end })
    end
    local inner, err = eng:generate(ids, {
        max_tokens = opts.max_tokens, unlimited = true,
        temperature = opts.temperature or 1.0, top_k = opts.top_k, top_p = opts.top_p, min_p = opts.min_p,
        repeat_penalty = opts.repeat_penalty, presence_penalty = opts.presence_penalty,
        frequency_penalty = opts.frequency_penalty, penalty_last_n = opts.penalty_last_n,
        seed = seed, logit_bias = opts.logit_bias, stop = opts.stop, ignore_eos = opts.ignore_eos,
        logprobs = opts.logprobs ~= nil, top_logprobs = opts.logprobs,
    }, summary)
    if not inner then error(err, 2) end
    self.current = inner.generation

    -- What the sequence holds at the end, for the next prompt's ids: the
    -- prompt and every generated token but the last.
    self.cached, self.cached_pieces = ids, nil
    local pieces = type(prompt) == "string" and { prompt } or nil
    local special = opts.special ~= false and not opts.raw
    local held
    local model = self
    return setmetatable({ summary = summary, generation = inner.generation }, { __call = function()
        local t = inner()
        if t and t.id then
            if held then
                ids[#ids + 1] = held
                if pieces then pieces[#pieces + 1] = model.tokenizer:piece(held) end
            end
            held = t.id
        end
        if (not t or t.finish_reason) and model.cached == ids and pieces then
            model.cached_pieces, model.cached_special = pieces, special
        end
        return t
    end })
end

-- ------------------------------------------------------------------ chat

-- render(messages, opts) -> the prompt text for this conversation: the
-- model's own chat template (ChatML when the file has none, noted in
-- self.notes) with the generation prompt added.
function Model:render(messages, opts)
    opts = opts or {}
    local template = self.chat_template
    if not template then
        template = M.CHATML_TEMPLATE
        self.notes = self.notes or {}
        if not self.noted_chatml then
            self.noted_chatml = true
            self.notes[#self.notes + 1] = string.format("%s has no chat template; using ChatML", self.path)
        end
    end
    local text, err = require("apr.chat").render(template, messages, {
        add_generation_prompt = true,
        tools = opts.tools,
        bos_token = self:token_text(self.tokenizer.bos),
        eos_token = self:token_text(self.tokenizer.eos),
    })
    if not text then error(string.format("chat template of %s: %s", self.path, tostring(err)), 2) end
    return text
end

-- chat(messages, opts) -> the same iterator as generate, answering the
-- conversation (an array of { role =, content = }).
function Model:chat(messages, opts)
    if type(messages) ~= "table" or #messages == 0 then
        error("chat: messages must be a non-empty array of { role =, content = }", 2)
    end
    opts = opts or {}
    local prompt = self:render(messages, opts)
    local gen_opts = {}
    for k, v in pairs(opts) do
        if k ~= "tools" then gen_opts[k] = v end
    end
    gen_opts.special = true
    return self:generate(prompt, gen_opts)
end

-- The default model: <name>.gguf in $APR_MODELS, else in models/ under
-- APR_HOME, where `make model` writes it (scripts/fetch_model.sh holds the
-- same name).
M.DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"

function M.models_dir()
    local dir = os.getenv("APR_MODELS")
    if dir and dir ~= "" then return dir end
    local home = rawget(_G, "APR_HOME") or os.getenv("APR_HOME") or "."
    return home .. "/models"
end

function M.default_model_path()
    return M.models_dir() .. "/" .. M.DEFAULT_MODEL .. ".gguf"
end

return M
