-- sampler.lua — the C sampler (runtime/model/sampler.c) as a Lua object.
--
--   local s = require("apr.sampler").new(n_vocab, { temperature = 0.7, top_p = 0.9, seed = 1 })
--   local id = s:sample(logits_ptr)        -- float * of n_vocab logits
--   s:accept(id)                           -- a prompt token into the penalty window
--   local lp, top = sampler.logprobs(logits_ptr, n_vocab, id, 5)
--
-- Options left out take the C defaults (apr_sampler_params_default): the
-- model's own distribution, no filters, no penalties.
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

local Sampler = {}
Sampler.__index = Sampler

local id_box = ffi.new("int32_t[1]")
local sampler_box = ffi.new("apr_sampler *[1]")
local float_box = ffi.new("float[1]")

-- The option names a caller may give, with the C field each one sets.
local FIELDS = {
    temperature = "temperature", top_k = "top_k", top_p = "top_p", min_p = "min_p",
    repeat_penalty = "repeat_penalty", presence_penalty = "presence_penalty",
    frequency_penalty = "frequency_penalty", penalty_last_n = "penalty_last_n", seed = "seed",
}

-- new(n_vocab, opts) -> sampler; raises for a parameter out of range (a
-- caller mistake), naming it.
function M.new(n_vocab, opts)
    opts = opts or {}
    local p = ffi.new("apr_sampler_params")
    C.apr_sampler_params_default(p)
    for name, field in pairs(FIELDS) do
        local v = opts[name]
        if v ~= nil then
            if type(v) ~= "number" then error(string.format("sampler option %s must be a number, got %s", name, type(v)), 2) end
            p[field] = v
        end
    end
    local status = C.apr_sampler_new(n_vocab, p, sampler_box)
    if status ~= 0 then
        local _, msg = core.failure(status, 2)
        error(msg, 2)
    end
    local self = setmetatable({
        handle = ffi.gc(sampler_box[0], C.apr_sampler_free),
        n_vocab = n_vocab,
        seed = tonumber(p.seed),
    }, Sampler)
    if opts.logit_bias then self:set_logit_bias(opts.logit_bias) end
    return self
end

-- sample(logits) -> id, or nil plus the message when the logits are not
-- finite or every token is banned. logits: a float * of n_vocab entries.
function Sampler:sample(logits)
    local status = C.apr_sampler_sample(self.handle, logits, id_box)
    if status ~= 0 then return core.failure(status) end
    return id_box[0]
end

function Sampler:accept(id)
    local status = C.apr_sampler_accept(self.handle, id)
    if status ~= 0 then return core.failure(status) end
    return true
end

function Sampler:reset() C.apr_sampler_reset(self.handle) end

-- set_logit_bias({ [id] = bias, ... }): replaces the bias (-math.huge bans).
function Sampler:set_logit_bias(bias)
    local n = 0
    for _ in pairs(bias) do n = n + 1 end
    local ids, values = ffi.new("int32_t[?]", math.max(n, 1)), ffi.new("float[?]", math.max(n, 1))
    local i = 0
    for id, b in pairs(bias) do
        id = tonumber(id)
        if not id then error("logit_bias keys must be token ids", 2) end
        ids[i], values[i] = id, b
        i = i + 1
    end
    local status = C.apr_sampler_set_logit_bias(self.handle, n, ids, values)
    if status ~= 0 then
        local _, msg = core.failure(status, 2)
        error(msg, 2)
    end
end

-- logprobs(logits, n_vocab, chosen, n_top) -> chosen's log-probability and
-- a list of { id =, logprob = } for the n_top most likely tokens, most likely
-- first. These are the model's raw distribution (log_softmax of the logits at
-- temperature 1, before penalties and filters), as OpenAI reports them.
function M.logprobs(logits, n_vocab, chosen, n_top)
    n_top = n_top or 0
    local top = ffi.new("apr_token_logprob[?]", math.max(n_top, 1))
    local status = C.apr_sampler_logprobs(logits, n_vocab, chosen, n_top, float_box, top)
    if status ~= 0 then return core.failure(status) end
    local list = {}
    for i = 0, n_top - 1 do list[i + 1] = { id = top[i].id, logprob = top[i].logprob } end
    return float_box[0], list
end

return M
