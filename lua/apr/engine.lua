-- engine.lua — the generation loop (runtime/engine/engine.c) seen from Lua.
--
-- Every generation goes through an engine: `apr serve`'s (many sequences,
-- watched from the event loop: apr.server.engine) and the one each model
-- object makes for m:generate and m:chat (one sequence, waited on here).
-- The engine samples, applies penalties, stop tokens, max_tokens and
-- prefix reuse; this module turns its token events into text, once for
-- both: incremental detokenizing (UTF-8 safe), stop strings (a match ends
-- the request and cancels it in the engine), log-probabilities, timings
-- and the reasons a generation ended.
--
--   local eng = assert(engine.new(model, { parallel = 1, ctx = 4096 }))
--   local gen = assert(eng:start(ids, { max_tokens = 16, stop = { "\n" } }, function(p)
--       io.write(p.text)               -- p.finish_reason set on the last piece
--   end))
--   while not gen.done do eng:wait(100) eng:drain() end
--   for t in eng:generate(ids, opts) do io.write(t.text) end   -- the same, as an iterator
local core = require "apr.core"
local stopper = require "apr.text.stop"

local ffi, C = core.ffi, core.C

local M = {}

local FINISH = {
    [tonumber(C.APR_FINISH_STOP)] = "stop",
    [tonumber(C.APR_FINISH_LENGTH)] = "length",
    [tonumber(C.APR_FINISH_CANCELLED)] = "cancelled",
    [tonumber(C.APR_FINISH_ERROR)] = "error",
}
local APR_ERR_BUSY = tonumber(C.APR_ERR_BUSY)
local APR_ERR_INVALID = tonumber(C.APR_ERR_INVALID)
local APR_ERR_RANGE = tonumber(C.APR_ERR_RANGE)
local APR_ERR_CANCELLED = tonumber(C.APR_ERR_CANCELLED)
local INT_MAX = 2147483647

-- The sampler's fields a request may set, by option name (the rest keep
-- apr_sampler_params_default's values).
local SAMPLING = { "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                   "repeat_penalty", "penalty_last_n" }

local N_EVENTS = 256
local events = ffi.new("apr_engine_event[?]", N_EVENTS)
local engine_box = ffi.new("apr_engine *[1]")
local id_box = ffi.new("uint64_t[1]")
local stats_box = ffi.new("apr_engine_stats")

local hrtime = require("luv").hrtime
local function now() return hrtime() * 1e-9 end

------------------------------------------------------------------ generations

local Generation = {}
Generation.__index = Generation
M.Generation = Generation

-- Ends the generation early (the client went away): the engine frees its
-- sequence, and on_piece hears nothing more.
function Generation:cancel()
    if self.done then return end
    self.done = true
    self.finish_reason = "cancelled"
    self.engine:_forget(self)
    C.apr_engine_cancel(self.engine.handle, self.id)
end

-- Ends it on Ctrl+C: cancelled in the engine, and a last piece (what the
-- decoder and the stop-string matcher held back) with finish_reason
-- "interrupted".
function Generation:interrupt()
    if self.done then return end
    self:cancel()
    self.finish_reason = "interrupted"
    local tail, stopped = self.stop:push(self.decoder:flush())
    if not stopped then tail = tail .. self.stop:flush() end
    self.on_piece({ text = tail, finish_reason = "interrupted", stop_reason = "interrupted",
                    n_prompt = self.n_prompt, n_generated = self.n_generated, n_cached = self.n_cached })
end

-- Why a generation the engine ended stopped, in apr.load(...):generate's
-- words: eos (an end-of-generation token), stop (a stop token or string),
-- max_tokens, context (the pool ran out first), cancelled, error.
local function stop_reason(self, finish, token)
    if finish == "stop" then return self.engine.model.tokenizer:is_eog(token) and "eos" or "stop" end
    if finish == "length" then return self.n_generated >= self.max_tokens and "max_tokens" or "context" end
    return finish
end

-- One token event -> one piece for on_piece: { token, text, logprob, top
-- ({ id =, logprob = }...), n_prompt, n_cached, n_generated, ttft (seconds
-- from start to the first token) or itl (since the previous one), and on
-- the last piece finish_reason (stop, length, cancelled, error,
-- interrupted), stop_reason, error and status }.
function Generation:_event(ev)
    if self.done then return end
    local t = now()
    local token = tonumber(ev.token)
    local finish = FINISH[tonumber(ev.finish)]
    local piece = { n_prompt = tonumber(ev.n_prompt), n_generated = tonumber(ev.n_generated),
                    n_cached = tonumber(ev.n_cached), text = "" }
    if token >= 0 then
        piece.token = token
        if self.first_token_at == nil then
            self.first_token_at = t
            piece.ttft = t - self.submitted_at
        else
            piece.itl = t - self.last_token_at
        end
        self.last_token_at = t
        if self.logprobs then
            piece.logprob = ev.logprob
            piece.top = {}
            for i = 0, ev.n_top - 1 do
                piece.top[i + 1] = { id = tonumber(ev.top[i].id), logprob = ev.top[i].logprob }
            end
        end
        if ev.stop_token == 0 then
            piece.text = self.decoder:push(token)
        else
            piece.stop_token = true
        end
    end
    if finish == "error" then
        piece.status = tonumber(ev.status)
        if piece.status == APR_ERR_CANCELLED then
            finish = "interrupted"   -- Ctrl+C stopped the pass
        else
            piece.error = ffi.string(ev.message)
        end
    end
    -- The engine ending the stream releases what the decoder holds (an
    -- unfinished UTF-8 sequence) into the stop-string matcher.
    if finish then piece.text = piece.text .. self.decoder:flush() end
    local text, stopped = self.stop:push(piece.text)
    self.n_generated = piece.n_generated
    self.n_prompt, self.n_cached = piece.n_prompt, piece.n_cached
    if stopped then
        finish = "stop"
        piece.stop_string = true
        piece.stop_reason = "stop"
    elseif finish then
        text = text .. self.stop:flush()
        piece.stop_reason = finish == "interrupted" and "interrupted" or stop_reason(self, finish, token)
    end
    piece.text = text
    piece.finish_reason = finish
    if finish then
        self.done = true
        self.finish_reason = finish
        self.engine:_forget(self)
        -- A stop string ends it here; the engine may still be generating.
        if stopped and not FINISH[tonumber(ev.finish)] then C.apr_engine_cancel(self.engine.handle, self.id) end
    end
    self.on_piece(piece)
end

------------------------------------------------------------------ the engine

local Engine = {}
Engine.__index = Engine
M.Engine = Engine

-- The KV cache's element types, by the names the options use: f16, or
-- llama.cpp's Q8_0 and Q4_0 blocks (about 0.53 and 0.28 of f16's bytes).
-- Which ones a device runs is its backend's to say, when the engine's
-- context is made (apr_engine_new fails with the backend's message).
M.KV_TYPES = { f16 = tonumber(C.APR_F16), q8_0 = tonumber(C.APR_Q8_0), q4_0 = tonumber(C.APR_Q4_0) }
M.KV_TYPE_NAMES = { "f16", "q8_0", "q4_0" }

-- kv_type(v) -> the apr_dtype of a KV type given by name or as an
-- apr_dtype number, or nil and a message.
function M.kv_type(v)
    local t = type(v) == "string" and M.KV_TYPES[v] or (type(v) == "number" and v or nil)
    if not t then
        return nil, string.format("kv_type must be %s, got '%s'", table.concat(M.KV_TYPE_NAMES, ", "), tostring(v))
    end
    return t
end

-- new(model, opts) -> engine, or nil and a message. model: apr.load's
-- object; opts: parallel (sequences, 4), ctx (KV slots of all of them; 0 or
-- nil: the model's training context, or what a VRAM budget leaves room
-- for), batch, queue (waiting requests before "busy"), kv_type ("f16",
-- "q8_0", "q4_0", or an apr_dtype number; f16 when nil), prefix_cache
-- (false: compute every prompt), zram_ratio (> 0: KV blocks evicted from
-- the device go to a compressed host pool of that many times the cache's
-- bytes and come back from it; docs/zram.md) and zram_algo ("lz4", the
-- default, or "zstd").
function M.new(model, opts)
    opts = opts or {}
    local p = ffi.new("apr_engine_params")
    C.apr_engine_params_default(p)
    p.n_seq = opts.parallel or p.n_seq
    p.n_ctx = opts.ctx or 0
    p.n_batch = opts.batch or p.n_batch
    p.max_queue = opts.queue or p.max_queue
    if opts.kv_type then
        local t, err = M.kv_type(opts.kv_type)
        if not t then return nil, err end
        p.kv_type = t
    end
    if opts.prefix_cache == false then p.prefix_cache = 0 end
    if opts.zram_ratio then
        p.zram_ratio = opts.zram_ratio
        if opts.zram_algo then
            local algo = require("apr.zram").algo_id(opts.zram_algo)
            if not algo then error("zram_algo must be \"lz4\" or \"zstd\", got " .. tostring(opts.zram_algo), 2) end
            p.zram_algo = algo
        end
    end
    local status = C.apr_engine_new(model.handle, p, engine_box)
    if status ~= 0 then return core.failure(status) end
    -- The engine's thread runs the model until it is freed, so its
    -- finalizer holds the model (two plain finalizers of one cycle run in
    -- any order).
    local model_handle = model.handle
    local self = setmetatable({
        handle = ffi.gc(engine_box[0], function(e)
            C.apr_engine_free(e)
            return model_handle
        end),
        model = model,
        live = {},              -- request id -> Generation
        n_live = 0,
    }, opts.class or Engine)
    local st = self:stats()
    self.n_ctx, self.n_seq, self.prefix_cache = st.n_ctx, st.n_seq, st.prefix_cache
    return self
end

-- Takes the waiting events and hands each to its generation. Never blocks.
function Engine:drain()
    while true do
        local n = C.apr_engine_poll(self.handle, events, N_EVENTS)
        for i = 0, n - 1 do
            local ev = events[i]
            local gen = self.live[tonumber(ev.id)]
            if gen then self:_deliver(gen, ev) end
        end
        if n < N_EVENTS then break end
    end
end

function Engine:_deliver(gen, ev) gen:_event(ev) end

-- wait(timeout_ms) -> true when events are waiting (false after the
-- timeout or Ctrl+C).
function Engine:wait(timeout_ms)
    return C.apr_engine_wait(self.handle, timeout_ms or -1) ~= 0
end

function Engine:_forget(gen)
    if self.live[gen.id] then
        self.live[gen.id] = nil
        self.n_live = self.n_live - 1
    end
end

-- start(ids, opts, on_piece) -> generation, or nil, message, kind where
-- kind is "busy" (the queue is full), "invalid" (a bad parameter) or
-- "range" (a token id, or a prompt that does not fit the pool).
-- opts: max_tokens (16; nil with unlimited = true: until the pool is
-- full), temperature, top_p, top_k, min_p, presence_penalty,
-- frequency_penalty, repeat_penalty, penalty_last_n, seed (nil: random),
-- logprobs (bool), top_logprobs (n), stop (strings), stop_ids, ignore_eos,
-- logit_bias ({ [id] = bias }).
function Engine:start(ids, opts, on_piece)
    if self.closed then return nil, "the model is being unloaded", "busy" end
    local n = #ids
    local r = ffi.new("apr_engine_request")
    C.apr_engine_request_default(r)
    local prompt = ffi.new("int32_t[?]", math.max(n, 1))
    for i = 1, n do prompt[i - 1] = ids[i] end
    r.prompt, r.n_prompt = prompt, n
    local max_tokens = opts.max_tokens or (opts.unlimited and INT_MAX or 16)
    r.max_tokens = math.min(max_tokens, INT_MAX)
    local s = r.sampling
    for _, name in ipairs(SAMPLING) do
        if opts[name] then s[name] = opts[name] end
    end
    s.seed = opts.seed or math.random(0, 2 ^ 31 - 1)
    r.logprobs = opts.logprobs and 1 or 0
    r.top_logprobs = opts.top_logprobs or 0
    r.ignore_eog = opts.ignore_eos and 1 or 0
    local stop_ids
    if opts.stop_ids and #opts.stop_ids > 0 then
        stop_ids = ffi.new("int32_t[?]", #opts.stop_ids)
        for i, id in ipairs(opts.stop_ids) do stop_ids[i - 1] = id end
        r.stop_ids, r.n_stop_ids = stop_ids, #opts.stop_ids
    end
    local bias_ids, bias
    if opts.logit_bias then
        local nb = 0
        for _ in pairs(opts.logit_bias) do nb = nb + 1 end
        bias_ids, bias = ffi.new("int32_t[?]", math.max(nb, 1)), ffi.new("float[?]", math.max(nb, 1))
        local i = 0
        for id, b in pairs(opts.logit_bias) do
            bias_ids[i], bias[i] = id, b
            i = i + 1
        end
        r.bias_ids, r.bias, r.n_bias = bias_ids, bias, nb
    end
    local status = C.apr_engine_submit(self.handle, r, id_box)
    if status ~= 0 then
        local msg = core.last_error()
        local kind = status == APR_ERR_BUSY and "busy" or status == APR_ERR_RANGE and "range" or
            status == APR_ERR_INVALID and "invalid" or "error"
        return nil, msg, kind
    end
    local id = tonumber(id_box[0])
    local gen = setmetatable({
        id = id, engine = self, on_piece = on_piece, done = false,
        logprobs = opts.logprobs or (opts.top_logprobs or 0) > 0,
        decoder = self.model.tokenizer:decoder({ skip_control = true }),
        stop = stopper.new(opts.stop),
        submitted_at = now(), n_prompt = n, n_generated = 0, n_cached = 0,
        max_tokens = max_tokens,
    }, Generation)
    self.live[id] = gen
    self.n_live = self.n_live + 1
    return gen
end

-- Waits until gen has a piece for its iterator: here by blocking on the
-- engine (Ctrl+C interrupts the generation); apr.server.engine yields to
-- the event loop instead.
function Engine:_await(gen, queue)
    while #queue == 0 and not gen.done do
        if C.apr_interrupted() ~= 0 then
            gen:interrupt()
            break
        end
        self:wait(100)
        self:drain()
    end
end

-- generate(ids, opts [, summary]) -> an iterator of { id =, text =,
-- logprob =, top_logprobs =, finish_reason = } (a callable object: `for t
-- in eng:generate(...)`); opts as for start. t.text is the text that
-- became final with this token (possibly ""). After the loop, its summary
-- (the table given, or a new one) holds finish_reason, stop_reason,
-- n_prompt, n_cached, n_generated, text, and timings { prompt_s (start to
-- the first token), prompt_tps (prompt tokens computed a second), decode_s,
-- decode_tps }. Returns nil, message, kind as start does when the request
-- is refused; a failure inside the engine is raised by the iterator.
function Engine:generate(ids, opts, summary)
    summary = summary or {}
    local queue, parts = {}, {}
    local gen, err, kind = self:start(ids, opts, function(piece)
        queue[#queue + 1] = piece
        if queue.wake then
            local w = queue.wake
            queue.wake = nil
            w()
        end
    end)
    if not gen then return nil, err, kind end
    local finished = false
    local first_at, last_at
    local function finish(p)
        finished = true
        summary.finish_reason, summary.stop_reason = p.finish_reason, p.stop_reason
        summary.n_prompt, summary.n_cached, summary.n_generated = p.n_prompt, p.n_cached, p.n_generated
        summary.text = table.concat(parts)
        local t = summary.timings or {}
        summary.timings = t
        local start = gen.submitted_at
        t.prompt_s = (first_at or now()) - start
        t.prompt_tps = (p.n_prompt - p.n_cached) / math.max(t.prompt_s, 1e-9)
        t.decode_s = first_at and (last_at - first_at) or 0
        -- the first token came with the prompt: the others were decoded
        t.decode_tps = math.max(p.n_generated - 1, 0) / math.max(t.decode_s, 1e-9)
    end
    local iter = { summary = summary, generation = gen }
    return setmetatable(iter, { __call = function()
        if finished then return nil end
        if #queue == 0 then self:_await(gen, queue) end
        local p = table.remove(queue, 1)
        if not p then return nil end
        if p.token then
            last_at = now()
            first_at = first_at or last_at
        end
        parts[#parts + 1] = p.text
        if p.error then
            finish(p)
            error(p.error, 0)
        end
        if p.finish_reason then finish(p) end
        local item = { id = p.token, text = p.text, logprob = p.logprob, finish_reason = p.finish_reason }
        if p.top then item.top_logprobs = p.top end
        return item
    end })
end

function Engine:stats()
    C.apr_engine_get_stats(self.handle, stats_box)
    local s = stats_box
    return {
        n_seq = s.n_seq, n_ctx = s.n_ctx, n_ctx_seq = s.n_ctx_seq, prefix_cache = s.prefix_cache ~= 0,
        running = s.running, queued = s.queued,
        kv_tokens_used = s.kv_tokens_used, kv_tokens_total = s.kv_tokens_total,
        kv_blocks_used = s.kv_blocks_used, kv_blocks_cached = s.kv_blocks_cached, kv_blocks_total = s.kv_blocks_total,
        batch_tokens_last = s.batch_tokens_last,
        steps = tonumber(s.steps), submitted = tonumber(s.submitted),
        tokens_prompt = tonumber(s.tokens_prompt), tokens_generated = tonumber(s.tokens_generated),
        tokens_reused = tonumber(s.tokens_reused), preemptions = tonumber(s.preemptions),
    }
end

-- zram_stats() -> nil without a pool; else { pool = the pool's counters
-- (apr.zram's stats), swap = the KV blocks moved (apr_kv_swap_stats) }.
local zpool_box, zswap_box = ffi.new("apr_zram_stats"), ffi.new("apr_kv_swap_stats")
function Engine:zram_stats()
    if C.apr_engine_get_zram(self.handle, zpool_box, zswap_box) == 0 then return nil end
    local zram = require "apr.zram"
    return { pool = zram.pool_stats(zpool_box), swap = zram.swap_stats(zswap_box) }
end

-- Requests whose final piece has not come yet.
function Engine:in_flight() return self.n_live end

-- Frees the engine (and its context and thread) now; requests in flight
-- get no more pieces.
function Engine:free()
    if not self.handle then return end
    C.apr_engine_free(ffi.gc(self.handle, nil))
    self.handle = nil
end

return M
