-- server/engine.lua — the engine (apr.engine) inside `apr serve`'s event
-- loop.
--
-- The engine's eventfd is watched with a luv poll handle, so its token
-- events reach their requests' callbacks between other loop events, and
-- the loop never waits on the model. Everything else (requests, pieces of
-- text, stop strings, log-probabilities) is apr.engine's, shared with
-- apr.load(...):generate.
--
--   local eng = assert(engine.new(model, { parallel = 4 }))
--   local gen = eng:start(ids, { max_tokens = 16, stop = { "\n" } }, function(p)
--       io.write(p.text)               -- p.finish_reason set on the last piece
--   end)
--   gen:cancel()                       -- the client went away
--
-- Inside a handler coroutine, engine:generate(prompt, opts) gives the same
-- iterator as apr.load(...):generate, fed by this engine.
local uv = require "luv"
local base = require "apr.engine"
local http = require "apr.server.http"

local M = {}

local Engine = setmetatable({}, { __index = base.Engine })
Engine.__index = Engine

-- new(model, opts) -> engine, or nil and a message; opts as apr.engine.new's.
function M.new(model, opts)
    opts = opts or {}
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.class = Engine
    local self, err = base.new(model, o)
    if not self then return nil, err end
    self.n_ctx_seq = self.n_ctx
    self.max_token_bytes = M.max_token_bytes(model.tokenizer)
    self.poll = uv.new_poll(tonumber(require("apr.core").C.apr_engine_fd(self.handle)))
    self.poll:start("r", function() self:drain() end)
    return self
end

-- The most bytes one token of tok stands for (128 in Qwen2.5's
-- vocabulary): a text of n bytes has at least n / this many tokens, so
-- the server can refuse a prompt that cannot fit before tokenizing it.
function M.max_token_bytes(tok)
    local core = require "apr.core"
    local ffi, C = core.ffi, core.C
    local most = 1
    local str, len = ffi.new("const char *[1]"), ffi.new("size_t[1]")
    for id = 0, tok.n_vocab - 1 do
        -- The bytes it stands for, or, for a control token written in a
        -- prompt ("<|im_end|>"), its text.
        if C.apr_token_piece(tok.handle, id, str, len) == 0 and tonumber(len[0]) > most then most = tonumber(len[0]) end
        if C.apr_token_is_special(tok.handle, id) ~= 0 and C.apr_token_text(tok.handle, id, str) == 0 then
            local n = #ffi.string(str[0])
            if n > most then most = n end
        end
    end
    return most
end

-- A failing callback must not take the loop down with it.
function Engine:_deliver(gen, ev)
    local ok, err = pcall(gen._event, gen, ev)
    if not ok then io.stderr:write("apr serve: engine event handler failed: ", tostring(err), "\n") end
end

function Engine:drain()
    base.Engine.drain(self)
    if self.n_live == 0 and self.on_idle then self.on_idle() end
end

-- Inside a handler coroutine: yields to the loop until a piece comes.
function Engine:_await(gen, queue)
    if #queue == 0 and not gen.done then http.await(function(wake) queue.wake = wake end) end
end

-- generate(prompt, opts) -> iterator of { id =, text = } inside a handler
-- coroutine, as model:generate gives (prompt: text or ids; opts as for
-- start, plus special = false to keep control-token text plain). Raises
-- router errors for bad requests and a full queue.
function Engine:generate(prompt, opts)
    opts = opts or {}
    local ids = prompt
    if type(prompt) == "string" then
        -- Off the loop when long (tokenize.lua).
        local tids, terr = require("apr.server.tokenize").ids(self.model, prompt, { special = opts.special ~= false })
        if not tids then error(terr, 2) end
        ids = self.model.tokenizer:with_bos(tids)
    end
    local iter, err, kind = base.Engine.generate(self, ids, opts)
    if not iter then
        require("apr.server.router").fail(kind == "busy" and 503 or 400, err)
    end
    return iter
end

-- Frees the engine (and its context) once nothing is in flight; fn runs
-- then, with the last stats in self.final_stats. New requests are refused
-- from now on.
function Engine:retire(fn)
    self.closed = true
    local function finish()
        if self.poll then
            self.poll:stop()
            self.poll:close()
            self.poll = nil
        end
        self.final_stats = self:stats()
        self.final_zram = self:zram_stats()
        self:free()
        if fn then fn() end
    end
    if self.n_live == 0 then return finish() end
    self.on_idle = function()
        self.on_idle = nil
        finish()
    end
end

return M
