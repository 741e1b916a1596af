-- server/body.lua — request bodies checked and decoded as JSON, the large
-- ones off the event loop.
--
-- Checking 8 MB of UTF-8 and decoding it as JSON takes Lua about 0.4 s of
-- CPU, which every other client used to wait through. A body over INLINE
-- bytes is checked and decoded on libuv's thread pool instead, in a Lua
-- state of its own, while its handler waits (http.await). A decoded value
-- cannot cross Lua states, so the worker sends back the value's skeleton
-- as JSON with each long string (the prompt, a message) replaced by a
-- marker, plus the long strings themselves: small to decode again here,
-- and the long strings are used as they are.
--
--   local value, err = body.decode(text)   -- in a handler coroutine
local uv = require "luv"
local json = require "apr.json"
local utf8 = require "apr.text.utf8"
local http = require "apr.server.http"

local M = {}

M.INLINE = 65536      -- bytes decoded on the loop itself
local LONG = 4096     -- strings the worker sends apart from the skeleton

-- Runs on the thread pool: returns "ok", skeleton JSON and the long
-- strings framed as "<length>:<bytes>" one after another, or "utf8" and
-- the bad byte's index, or "json" and the decoder's message.
local function work(home, text, marker, long)
    if not package.loaded["apr.json"] then
        package.path = home .. "/lua/?.lua;" .. home .. "/lua/?/init.lua;" .. package.path
    end
    local wjson = require "apr.json"
    local wutf8 = require "apr.text.utf8"
    local ok, at = wutf8.validate(text)
    if not ok then return "utf8", tostring(at) end
    local value, err = wjson.decode(text)
    if value == nil then return "json", tostring(err) end
    local longs = {}
    local function strip(v)
        if type(v) == "string" then
            if #v < long then return v end
            longs[#longs + 1] = #v .. ":" .. v
            return marker .. #longs
        elseif wjson.is_object(v) then
            for _, k in ipairs(wjson.keys(v)) do rawset(v, k, strip(v[k])) end
        elseif wjson.is_array(v) then
            for i = 1, #v do v[i] = strip(v[i]) end
        end
        return v
    end
    value = strip(value)
    return "ok", wjson.encode(value), table.concat(longs)
end

-- Puts the long strings back where their markers are.
local function restore(v, marker, longs)
    if type(v) == "string" then
        local i = v:sub(1, #marker) == marker and tonumber(v:sub(#marker + 1))
        return i and longs[i] or v
    elseif json.is_object(v) then
        for _, k in ipairs(json.keys(v)) do rawset(v, k, restore(v[k], marker, longs)) end
    elseif json.is_array(v) then
        for i = 1, #v do v[i] = restore(v[i], marker, longs) end
    end
    return v
end

-- decode(text) -> value, or nil, "utf8", index of the first bad byte, or
-- nil, "json", the decoder's message. Must run in a handler coroutine when
-- text is longer than INLINE.
function M.decode(text)
    if #text <= M.INLINE then
        local ok, at = utf8.validate(text)
        if not ok then return nil, "utf8", at end
        local value, err = json.decode(text)
        if value == nil then return nil, "json", err end
        return value
    end
    -- A marker no body can hold by chance: random, and with a NUL byte.
    local marker = string.format("\0apr-long-%08x%08x:", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    local home = rawget(_G, "APR_HOME") or os.getenv("APR_HOME") or "."
    local kind, a, b = http.await(function(done)
        uv.new_work(work, function(...) done(...) end):queue(home, text, marker, LONG)
    end)
    if kind == "utf8" then return nil, "utf8", tonumber(a) end
    if kind ~= "ok" then return nil, "json", a end
    local longs, i = {}, 1
    while i <= #b do
        local colon = b:find(":", i, true)
        local n = tonumber(b:sub(i, colon - 1))
        longs[#longs + 1] = b:sub(colon + 1, colon + n)
        i = colon + n + 1
    end
    return restore(assert(json.decode(a)), marker, longs)
end

return M
