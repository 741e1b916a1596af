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
    self.poll = uv.new_poll(tonumber(require("apr.core").C.apr_engine_fd(self.handle)))
    self.poll:start("r", function() self:drain() end)
    return self
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
        ids = self.model.tokenizer:with_bos(self.model:tokenize(prompt, { special = opts.special ~= false }))
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
