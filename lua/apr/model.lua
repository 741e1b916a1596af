-- model.lua — apr.load: a model, its tokenizer, and text generation.
--
--   local m = assert(apr.load("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", { ctx = 4096 }))
--   for t in m:generate("fn main() {", { max_tokens = 32 }) do io.write(t.text) end
--   for t in m:chat({ { role = "user", content = "Hi" } }) do io.write(t.text) end
--   local logits = m:forward(m:tokenize("Hello"))   -- F32 [n_vocab, n]; logits:row(-1)
--
-- One inference context is made per model object on first use, with opts.ctx
-- token slots. Generation keeps what the context holds: a prompt that extends
-- the previous one (the next turn of a chat) only decodes its new tokens.
-- docs/lua-api.md ("Models") is the reference.
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local sampler = require "apr.sampler"
local stopper = require "apr._stop"
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

-- The KV cache's element types, by the names the options use: f16, or
-- llama.cpp's Q8_0 and Q4_0 blocks (about 0.53 and 0.28 of f16's bytes).
-- Which ones a device runs is its backend's to say, when the context is made.
M.KV_TYPES = { f16 = tonumber(C.APR_F16), q8_0 = tonumber(C.APR_Q8_0), q4_0 = tonumber(C.APR_Q4_0) }
M.KV_TYPE_NAMES = { "f16", "q8_0", "q4_0" }
local DEVICE_NAMES = { [tonumber(C.APR_DEVICE_AUTO)] = "auto", [tonumber(C.APR_DEVICE_CPU)] = "cpu",
                       [tonumber(C.APR_DEVICE_CUDA)] = "cuda" }

local model_box = ffi.new("apr_model *[1]")
local context_box = ffi.new("apr_context *[1]")

-- Wall-clock seconds from libuv's monotonic clock (os.clock counts CPU
-- time, which a multithreaded decode inflates).
local hrtime = require("luv").hrtime
local function now() return hrtime() * 1e-9 end

-- ------------------------------------------------------------------ loading

local function check_opts(opts)
    local function typed(name, t)
        if opts[name] ~= nil and type(opts[name]) ~= t then
            error(string.format("apr.load: option %s must be a %s, got %s", name, t, type(opts[name])), 4)
        end
    end
    typed("device", "string") typed("threads", "number") typed("ctx", "number")
    typed("vram_budget", "number") typed("gpu_index", "number") typed("kv_type", "string")
    if opts.device and not DEVICES[opts.device] then
        error(string.format("apr.load: device must be auto, cpu or cuda, got '%s'", opts.device), 4)
    end
    if opts.gpu and opts.device and opts.device ~= "cuda" then
        error(string.format("apr.load: gpu = true contradicts device = '%s'", opts.device), 4)
    end
    if opts.kv_type and not M.KV_TYPES[opts.kv_type] then
        error(string.format("apr.load: kv_type must be %s, got '%s'", table.concat(M.KV_TYPE_NAMES, ", "),
            opts.kv_type), 4)
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
-- there is none), gpu_index, threads, ctx (context slots), kv_type ("f16",
-- "q8_0", "q4_0": the KV cache's element type), vocab_only (just the
-- tokenizer and metadata), vram_budget (bytes).
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
-- the object is collected. opts as for load (ctx, kv_type, vocab_only).
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
        kv_type = opts.kv_type or "f16",
        cached = {},      -- the ids sequence 0 of the context holds, in order
        -- The bytes those ids stand for, as pieces to concatenate (the
        -- string prompt, then each generated token's bytes), when known:
        -- cached_special says how that prompt was tokenized.
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

function Model:_context()
    if self.vocab_only then
        error(string.format("%s was loaded with vocab_only: it has no weights to run", self.path), 3)
    end
    if not self.ctx then
        local p = ffi.new("apr_context_params")
        C.apr_context_params_default(p)
        p.n_ctx = self.n_ctx
        p.kv_type = M.KV_TYPES[self.kv_type]
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
        self.logits = ffi.new("float[?]", self.info.n_vocab)
    end
    return self.ctx
end

-- Forgets the cached tokens from position `from` (0-based) on.
function Model:_truncate(from)
    local status = C.apr_context_seq_truncate(self.ctx, 0, from)
    if status ~= 0 then
        local _, msg = core.failure(status, 3)
        error(msg, 3)
    end
    if from < #self.cached then self.cached_pieces = nil end
    for i = #self.cached, from + 1, -1 do self.cached[i] = nil end
end

local batch = ffi.new("apr_batch")

-- Decodes ids[first..last] after what the context holds, in batches of
-- n_batch; out (optional) receives logits per `want`: "last" (the last id's
-- into self.logits) or "all" (every id's, in order, into out). Returns true,
-- or nil and the message; "cancelled" when Ctrl+C stopped it.
function Model:_decode(ids, first, last, want, out)
    local n_vocab = self.info.n_vocab
    local buf = ffi.new("int32_t[?]", math.min(self.n_batch, last - first + 1))
    local flags = want == "all" and ffi.new("int8_t[?]", self.n_batch) or nil
    local written = 0
    local i = first
    while i <= last do
        local n = math.min(self.n_batch, last - i + 1)
        for k = 0, n - 1 do
            buf[k] = ids[i + k]
            if flags then flags[k] = 1 end
        end
        batch.n, batch.ids, batch.pos, batch.seq = n, buf, nil, nil
        batch.want_logits = flags
        local dest = want == "all" and (out + written * n_vocab) or self.logits
        local status = C.apr_decode(self.ctx, batch, dest)
        if status ~= 0 then
            if status == C.APR_ERR_CANCELLED then return nil, "cancelled" end
            return core.failure(status)
        end
        for k = 0, n - 1 do self.cached[#self.cached + 1] = ids[i + k] end
        if want == "all" then written = written + n end
        i = i + n
    end
    return true
end

local one_id = ffi.new("int32_t[1]")

-- Decodes one generated id (the hot path: no allocation).
function Model:_decode_one(id)
    one_id[0] = id
    batch.n, batch.ids, batch.pos, batch.seq, batch.want_logits = 1, one_id, nil, nil, nil
    local status = C.apr_decode(self.ctx, batch, self.logits)
    if status ~= 0 then
        if status == C.APR_ERR_CANCELLED then return nil, "cancelled" end
        return core.failure(status)
    end
    self.cached[#self.cached + 1] = id
    local pieces = self.cached_pieces
    if pieces then pieces[#pieces + 1] = self.tokenizer:piece(id) end
    return true
end

-- ------------------------------------------------------------------ forward

-- forward(ids) -> an apr.tensor F32 [n_vocab, n]: row i (1-based, -1 the
-- last) holds the logits after ids[1..i]. The context is reset first (its
-- contents are replaced by ids).
function Model:forward(ids)
    if type(ids) ~= "table" or #ids == 0 then error("forward: ids must be a non-empty array of token ids", 2) end
    for i, id in ipairs(ids) do
        if type(id) ~= "number" or id ~= math.floor(id) then
            error(string.format("forward: ids[%d] is not a whole number: %s", i, tostring(id)), 2)
        end
    end
    self:_context()
    if #ids > self.n_ctx then
        error(string.format("forward: %d ids do not fit the context of %d tokens", #ids, self.n_ctx), 2)
    end
    local n_vocab = self.info.n_vocab
    local t, err = require("apr.tensor").new("F32", { n_vocab, #ids })
    if not t then error(err, 2) end
    self:_truncate(0)
    local ok, msg = self:_decode(ids, 1, #ids, "all", ffi.cast("float *", t:data()))
    if not ok then
        self:_truncate(0)
        error(msg == "cancelled" and "forward: interrupted" or msg, 2)
    end
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
    if opts.logprobs and (opts.logprobs < 0 or opts.logprobs ~= math.floor(opts.logprobs)) then
        error("generate: logprobs must be a whole number >= 0", level + 1)
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
-- recognised unless opts.special == false or opts.raw), with BOS first when
-- the model asks for one, the prompt does not start with it, and not raw.
function Model:_prompt_ids(prompt, opts, level)
    local ids
    if type(prompt) == "string" then
        if prompt == "" then error("generate: the prompt is empty", level + 1) end
        local special = opts.special ~= false and not opts.raw
        local known = self.cached_pieces and self.cached_special == special and table.concat(self.cached_pieces)
        if known and #prompt > #known and prompt:sub(1, #known) == known then
            -- The prompt continues exactly what the context holds (the last
            -- prompt and its answer as generated): keep those ids and
            -- tokenize only the new text, so the next turn of a chat never
            -- re-processes the answer, however re-tokenizing it would split.
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
    local bos = self.tokenizer.bos
    if self.tokenizer.add_bos and not opts.raw and bos and ids[1] ~= bos then table.insert(ids, 1, bos) end
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
-- opts.logprobs = n, t.logprob and t.top_logprobs ({ id =, logprob = }, n of
-- them) give the raw model's log-probabilities at that step. After
-- the loop, the iterator's `summary` holds finish_reason ("stop": end of
-- generation token or stop string; "length": max_tokens or the context is
-- full; "interrupted": Ctrl+C), stop_reason (eos, stop, max_tokens, context,
-- interrupted), n_prompt, n_cached (prompt tokens reused from the context),
-- n_generated, seed, text, and timings { prompt_s, prompt_tps, decode_s,
-- decode_tps }. Failures (the prompt does not fit, an id out of range,
-- non-finite logits) raise errors.
function Model:generate(prompt, opts)
    opts = opts or {}
    check_gen_opts(opts, 2)
    self:_context()
    local ids = self:_prompt_ids(prompt, opts, 2)
    local n_vocab = self.info.n_vocab
    if #ids >= self.n_ctx then
        error(string.format("the prompt is %d tokens but the context holds %d (one more is needed to generate): use a larger ctx",
            #ids, self.n_ctx), 2)
    end

    local temperature = opts.temperature or 1.0
    local seed = opts.seed or fresh_seed()
    local s = sampler.new(n_vocab, {
        temperature = temperature, top_k = opts.top_k, top_p = opts.top_p, min_p = opts.min_p,
        repeat_penalty = opts.repeat_penalty, presence_penalty = opts.presence_penalty,
        frequency_penalty = opts.frequency_penalty, penalty_last_n = opts.penalty_last_n,
        seed = seed, logit_bias = opts.logit_bias,
    })
    -- Reuse the longest common prefix of what the context holds, keeping at
    -- least the last prompt token to decode (its logits start generation).
    local common = 0
    while common < #ids - 1 and self.cached[common + 1] == ids[common + 1] do common = common + 1 end
    self:_truncate(common)
    self.cached_pieces = nil

    local summary = { n_prompt = #ids, n_cached = common, n_generated = 0, seed = seed, timings = {} }
    local gen = { summary = summary }
    local t0 = now()
    local ok, err = self:_decode(ids, common + 1, #ids, "last")
    local t1 = now()
    summary.timings.prompt_s = t1 - t0
    summary.timings.prompt_tps = (#self.cached - common) / math.max(t1 - t0, 1e-9)
    if not ok and err ~= "cancelled" then
        self:_truncate(0)
        error(err, 2)
    end
    if ok and type(prompt) == "string" then
        self.cached_pieces, self.cached_special = { prompt }, opts.special ~= false and not opts.raw
    end
    -- The prompt's tail enters the penalty window, as in llama.cpp (the
    -- runtime has checked every id by now).
    local window = opts.penalty_last_n or 64
    for i = math.max(1, #ids - window + 1), #ids do assert(s:accept(ids[i])) end

    local decoder = self.tokenizer:decoder({ skip_control = true })
    local stop = stopper.new(opts.stop)
    local max_tokens = opts.max_tokens or math.huge
    local text_parts = {}
    local done = not ok or max_tokens == 0
    if done then
        summary.finish_reason = ok and "length" or "interrupted"
        summary.stop_reason = ok and "max_tokens" or "interrupted"
    end
    local decode_s = 0
    local model = self

    local function finish(reason, detail)
        done = true
        summary.finish_reason, summary.stop_reason = reason, detail
        local td = decode_s
        summary.timings.decode_s = td
        summary.timings.decode_tps = summary.n_generated / math.max(td, 1e-9)
        summary.text = table.concat(text_parts)
    end

    -- One step: sample from the current logits, settle the token's text,
    -- and (unless it ends generation) decode it so the next logits are ready.
    local function step()
        if done then return nil end
        local t_start = now()
        local id, serr = s:sample(model.logits)
        if not id then
            finish("error", "error")
            error(serr, 0)
        end
        summary.n_generated = summary.n_generated + 1
        local item = { id = id }
        if opts.logprobs then
            -- The sampler left the logits as they were: these are the raw
            -- model's log-probabilities, as OpenAI reports them.
            item.logprob, item.top_logprobs = sampler.logprobs(model.logits, n_vocab, id, opts.logprobs)
        end
        local eog = not opts.ignore_eos and model.tokenizer:is_eog(id)
        local piece = eog and "" or decoder:push(id)
        local text, stopped = stop:push(piece)
        local ending
        if stopped then ending = { "stop", "stop" }
        elseif eog then ending = { "stop", "eos" }
        elseif summary.n_generated >= max_tokens then ending = { "length", "max_tokens" }
        elseif #model.cached >= model.n_ctx then ending = { "length", "context" }
        elseif C.apr_interrupted() ~= 0 then ending = { "interrupted", "interrupted" }
        else
            local dok, derr = model:_decode_one(id)
            if not dok then
                if derr ~= "cancelled" then
                    finish("error", "error")
                    error(derr, 0)
                end
                ending = { "interrupted", "interrupted" }
            end
        end
        if ending and not stopped then
            -- The stream ends: release what the decoder and the stop matcher held.
            local tail, stopped_late = stop:push(decoder:flush())
            text = text .. tail
            if not stopped_late then text = text .. stop:flush() end
        end
        decode_s = decode_s + (now() - t_start)
        text_parts[#text_parts + 1] = text
        if ending then finish(ending[1], ending[2]) end
        item.text = text
        return item
    end

    if done then finish(summary.finish_reason, summary.stop_reason) end
    return setmetatable(gen, { __call = function() return step() end })
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
