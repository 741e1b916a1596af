-- server/engine.lua — the C engine thread (runtime/engine/engine.c) seen
-- from the event loop.
--
-- Requests go in with engine:start(ids, opts, on_piece); the engine's
-- eventfd is watched with a luv poll handle, and each token event becomes a
-- piece of text for its request: detokenized incrementally (UTF-8 safe),
-- checked against the request's stop strings (a match ends the request and
-- cancels it in the engine), with its log-probabilities when asked. The loop
-- never waits on the model.
--
--   local eng = assert(engine.new(model, { parallel = 4 }))
--   local gen = eng:start(ids, { max_tokens = 16, stop = { "\n" } }, function(p)
--       io.write(p.text)               -- p.finish_reason set on the last piece
--   end)
--   gen:cancel()                       -- the client went away
--
-- Inside a handler coroutine, engine:generate(prompt, opts) gives the same
-- iterator as apr.load(...):generate, fed by the engine instead.
local uv = require "luv"
local core = require "apr.core"
local stopper = require "apr._stop"
local http = require "apr.server.http"

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

local N_EVENTS = 256
local events = ffi.new("apr_engine_event[?]", N_EVENTS)
local engine_box = ffi.new("apr_engine *[1]")
local id_box = ffi.new("uint64_t[1]")
local stats_box = ffi.new("apr_engine_stats")

local function now() return uv.hrtime() * 1e-9 end

------------------------------------------------------------------ generations

local Generation = {}
Generation.__index = Generation

-- Ends the generation early (client gone): the engine frees its sequence,
-- and on_piece hears nothing more.
function Generation:cancel()
    if self.done then return end
    self.done = true
    self.finish_reason = "cancelled"
    self.engine:_forget(self)
    C.apr_engine_cancel(self.engine.handle, self.id)
end

-- One token event -> one piece for on_piece.
function Generation:_event(ev)
    if self.done then return end
    local t = now()
    local token = tonumber(ev.token)
    local finish = FINISH[tonumber(ev.finish)]
    local piece = { n_prompt = tonumber(ev.n_prompt), n_generated = tonumber(ev.n_generated), text = "" }
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
        piece.error = ffi.string(ev.message)
        piece.status = tonumber(ev.status)
    end
    -- The engine ending the stream releases what the decoder holds (an
    -- unfinished UTF-8 sequence) into the stop-string matcher.
    if finish then piece.text = piece.text .. self.decoder:flush() end
    local text, stopped = self.stop:push(piece.text)
    if stopped then
        finish = "stop"
        piece.stop_string = true
    elseif finish then
        text = text .. self.stop:flush()
    end
    piece.text = text
    piece.finish_reason = finish
    self.n_generated = piece.n_generated
    self.n_prompt = piece.n_prompt
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

-- new(model, opts) -> engine, or nil and a message. model: apr.load's
-- object; opts: parallel (sequences), ctx (KV slots of all of them),
-- batch, queue (waiting requests before 503), kv_type ("f16", "q8_0",
-- "q4_0", or an apr_dtype number).
function M.new(model, opts)
    opts = opts or {}
    local p = ffi.new("apr_engine_params")
    C.apr_engine_params_default(p)
    p.n_seq = opts.parallel or p.n_seq
    p.n_ctx = opts.ctx or 0
    p.n_batch = opts.batch or p.n_batch
    p.max_queue = opts.queue or p.max_queue
    if opts.kv_type then
        local t = type(opts.kv_type) == "string" and require("apr.model").KV_TYPES[opts.kv_type] or opts.kv_type
        if type(t) ~= "number" then
            return nil, string.format("kv_type must be %s, got '%s'",
                table.concat(require("apr.model").KV_TYPE_NAMES, ", "), tostring(opts.kv_type))
        end
        p.kv_type = t
    end
    local status = C.apr_engine_new(model.handle, p, engine_box)
    if status ~= 0 then return core.failure(status) end
    local self = setmetatable({
        handle = ffi.gc(engine_box[0], C.apr_engine_free),
        model = model,          -- keeps the apr_model alive as long as the engine
        live = {},              -- request id -> Generation
        n_live = 0,
    }, Engine)
    local fd = C.apr_engine_fd(self.handle)
    self.poll = uv.new_poll(fd)
    self.poll:start("r", function() self:_drain() end)
    local st = self:stats()
    self.n_ctx, self.n_ctx_seq, self.n_seq = st.n_ctx, st.n_ctx_seq, st.n_seq
    return self
end

function Engine:_drain()
    while true do
        local n = C.apr_engine_poll(self.handle, events, N_EVENTS)
        for i = 0, n - 1 do
            local ev = events[i]
            local gen = self.live[tonumber(ev.id)]
            if gen then
                local ok, err = pcall(gen._event, gen, ev)
                if not ok then io.stderr:write("apr serve: engine event handler failed: ", tostring(err), "\n") end
            end
        end
        if n < N_EVENTS then break end
    end
    if self.n_live == 0 and self.on_idle then self.on_idle() end
end

function Engine:_forget(gen)
    if self.live[gen.id] then
        self.live[gen.id] = nil
        self.n_live = self.n_live - 1
    end
end

-- start(ids, opts, on_piece) -> generation, or nil, message, kind where
-- kind is "busy" (queue full: 503), "invalid" (a bad parameter: 400) or
-- "range" (a token id or the prompt's length: 400).
-- opts: max_tokens, temperature, top_p, top_k, min_p, seed,
-- presence_penalty, frequency_penalty, repeat_penalty, logprobs (bool),
-- top_logprobs (n), stop (strings), stop_ids, ignore_eos, logit_bias
-- ({ [id] = bias }).
function Engine:start(ids, opts, on_piece)
    if self.closed then return nil, "the model is being unloaded", "busy" end
    local n = #ids
    local r = ffi.new("apr_engine_request")
    C.apr_engine_request_default(r)
    local prompt = ffi.new("int32_t[?]", math.max(n, 1))
    for i = 1, n do prompt[i - 1] = ids[i] end
    r.prompt, r.n_prompt = prompt, n
    r.max_tokens = opts.max_tokens or 16
    local s = r.sampling
    if opts.temperature then s.temperature = opts.temperature end
    if opts.top_p then s.top_p = opts.top_p end
    if opts.top_k then s.top_k = opts.top_k end
    if opts.min_p then s.min_p = opts.min_p end
    if opts.presence_penalty then s.presence_penalty = opts.presence_penalty end
    if opts.frequency_penalty then s.frequency_penalty = opts.frequency_penalty end
    if opts.repeat_penalty then s.repeat_penalty = opts.repeat_penalty end
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
        submitted_at = now(), n_prompt = n, n_generated = 0,
    }, Generation)
    self.live[id] = gen
    self.n_live = self.n_live + 1
    return gen
end

-- generate(prompt, opts) -> iterator of { id =, text = } inside a handler
-- coroutine, as model:generate gives (prompt: text or ids; opts as for
-- start, plus special = false to keep control-token text plain). Raises
-- router errors for bad requests and a full queue. After the loop the
-- iterator's summary has finish_reason, n_prompt, n_generated, text.
function Engine:generate(prompt, opts)
    opts = opts or {}
    local ids = prompt
    if type(prompt) == "string" then
        ids = self.model:tokenize(prompt, { special = opts.special ~= false })
        local tok = self.model.tokenizer
        if tok.add_bos and tok.bos and tok.bos >= 0 and ids[1] ~= tok.bos then table.insert(ids, 1, tok.bos) end
    end
    local queue, waiting, summary = {}, nil, { text = "" }
    local parts = {}
    local gen, err, kind = self:start(ids, opts, function(piece)
        queue[#queue + 1] = piece
        if waiting then
            local w = waiting
            waiting = nil
            w()
        end
    end)
    if not gen then
        local router = require "apr.server.router"
        router.fail(kind == "busy" and 503 or 400, err)
    end
    local finished = false
    local iter = { summary = summary, generation = gen }
    return setmetatable(iter, { __call = function()
        if finished then return nil end
        if #queue == 0 then
            http.await(function(wake) waiting = wake end)
        end
        local p = table.remove(queue, 1)
        if p.error then
            finished = true
            error(p.error, 0)
        end
        parts[#parts + 1] = p.text
        if p.finish_reason then
            finished = true
            summary.finish_reason = p.finish_reason
            summary.n_prompt, summary.n_generated = p.n_prompt, p.n_generated
            summary.text = table.concat(parts)
        end
        return { id = p.token, text = p.text, logprob = p.logprob, finish_reason = p.finish_reason }
    end })
end

function Engine:stats()
    C.apr_engine_get_stats(self.handle, stats_box)
    local s = stats_box
    return {
        n_seq = s.n_seq, n_ctx = s.n_ctx, n_ctx_seq = s.n_ctx_seq,
        running = s.running, queued = s.queued,
        kv_tokens_used = s.kv_tokens_used, kv_tokens_total = s.kv_tokens_total,
        kv_blocks_used = s.kv_blocks_used, kv_blocks_total = s.kv_blocks_total,
        batch_tokens_last = s.batch_tokens_last,
        steps = tonumber(s.steps), submitted = tonumber(s.submitted),
        tokens_prompt = tonumber(s.tokens_prompt), tokens_generated = tonumber(s.tokens_generated),
    }
end

-- Requests whose final piece has not come yet.
function Engine:in_flight() return self.n_live end

-- Frees the engine (and its context) once nothing is in flight; fn runs
-- then. New requests are refused from now on.
function Engine:retire(fn)
    self.closed = true
    local function finish()
        if self.poll then
            self.poll:stop()
            self.poll:close()
            self.poll = nil
        end
        C.apr_engine_free(ffi.gc(self.handle, nil))
        self.handle = nil
        if fn then fn() end
    end
    if self.n_live == 0 then return finish() end
    self.on_idle = function()
        self.on_idle = nil
        finish()
    end
end

return M
