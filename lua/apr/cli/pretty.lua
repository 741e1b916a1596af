-- cli/pretty.lua — values as readable text for the REPL.
--
-- Tables print as Lua constructors, keys sorted, nested to a few levels, long
-- lists cut short; anything with a __tostring prints through it.
local M = {}

local MAX_DEPTH, MAX_ITEMS = 3, 20

local function is_identifier(k)
    return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function key_order(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
end

local function format(v, depth, seen)
    local t = type(v)
    if t == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
    if t ~= "table" then return tostring(v) end
    local mt = getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    if seen[v] then return "<cycle>" end
    if depth >= MAX_DEPTH then return "{...}" end
    seen[v] = true
    local parts, n = {}, #v
    for i = 1, math.min(n, MAX_ITEMS) do parts[#parts + 1] = format(v[i], depth + 1, seen) end
    if n > MAX_ITEMS then parts[#parts + 1] = string.format("... (%d items)", n) end
    local keys = {}
    for k in pairs(v) do
        if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_order)
    for i, k in ipairs(keys) do
        if i > MAX_ITEMS then parts[#parts + 1] = string.format("... (%d keys)", #keys) break end
        local ks = is_identifier(k) and k or ("[" .. format(k, depth + 1, seen) .. "]")
        parts[#parts + 1] = ks .. " = " .. format(v[k], depth + 1, seen)
    end
    seen[v] = nil
    return "{" .. table.concat(parts, ", ") .. "}"
end

function M.format(v) return format(v, 0, {}) end

return M
