-- server/tokenize.lua — tokenization that never stalls the event loop.
--
-- Tokenizing megabytes takes a noticeable time (an 8 MB /tokenize held the
-- loop for 1.3 s, and every other client with it). Here a text up to
-- INLINE bytes is tokenized on the loop (a few milliseconds at most), and a
-- longer one on libuv's thread pool while the handler waits (http.await);
-- the tokenizer is immutable, so threads may share it (apr.h). The pool's
-- threads are joined when the process exits, which is fine here: a
-- tokenization always ends, in time bounded by the body size limit.
--
-- Each call holds the model (whose tokenizer the thread reads) until the
-- thread is done: the waiting handler's coroutine keeps it alive, and the
-- pool's callback keeps the coroutine.
--
--   local ids = tokenize.ids(model, text, { special = true })  -- in a handler
local uv = require "luv"
local http = require "apr.server.http"

local M = {}

M.INLINE = 16384  -- bytes tokenized on the loop itself

-- Runs in a thread-pool thread, in a Lua state of its own: tokenizes and
-- returns the ids as a string of int32_t, or as JSON text ("[1,2]") when
-- as_json (or nil and the message).
local function work(home, handle, text, flags, as_json)
    if not package.loaded["apr.ffi"] then
        package.path = home .. "/lua/?.lua;" .. home .. "/lua/?/init.lua;" .. package.path
    end
    local ffi = require "ffi"
    local C = require("apr.ffi").C
    local tok = ffi.cast("const apr_tokenizer *", handle)
    local cap = #text + 2
    local ids = ffi.new("int32_t[?]", cap)
    local n = ffi.new("size_t[1]")
    local st = C.apr_tokenize(tok, text, #text, flags, ids, cap, n)
    if st ~= 0 then return nil, ffi.string(C.apr_last_error()) end
    if as_json then
        local parts = {}
        for i = 0, tonumber(n[0]) - 1 do parts[i + 1] = tostring(ids[i]) end
        return "[" .. table.concat(parts, ",") .. "]"
    end
    return ffi.string(ids, tonumber(n[0]) * 4)
end

local function decode(packed)
    local ffi = require "ffi"
    local p = ffi.cast("const int32_t *", packed)
    local out = {}
    for i = 0, #packed / 4 - 1 do out[i + 1] = p[i] end
    return out
end

-- The worker's result for text (packed ids, or JSON text when as_json),
-- waited for in the calling handler's coroutine.
local function offload(model, text, opts, as_json)
    local core = require "apr.core"
    local flags = (opts and opts.special) and tonumber(core.C.APR_TOKENIZE_SPECIAL) or 0
    local handle = tonumber(core.ffi.cast("uintptr_t", model.tokenizer.handle))
    local home = rawget(_G, "APR_HOME") or os.getenv("APR_HOME") or "."
    return http.await(function(done)
        uv.new_work(work, function(r, e) done(r, e) end):queue(home, handle, text, flags, as_json or false)
    end)
end

-- ids(model, text, opts) -> array of token ids, or nil and a message (the
-- tokenizer's failure). opts.special as for model:tokenize. Must run in a
-- handler coroutine when text is longer than INLINE.
function M.ids(model, text, opts)
    if #text <= M.INLINE then return model:tokenize(text, opts) end
    local packed, err = offload(model, text, opts, false)
    if not packed then return nil, err end
    return decode(packed)
end

-- json(model, text, opts) -> the ids as JSON text ("[9707,1879]"), or nil
-- and a message. For /tokenize: millions of ids are turned into a table
-- and then into JSON on the worker too, not on the loop (an 8 MB text's
-- 7 million ids took 0.4 s to encode).
function M.json(model, text, opts)
    if #text <= M.INLINE then
        local ids, err = model:tokenize(text, opts)
        if not ids then return nil, err end
        local parts = {}
        for i, id in ipairs(ids) do parts[i] = tostring(id) end
        return "[" .. table.concat(parts, ",") .. "]"
    end
    return offload(model, text, opts, true)
end

return M
