-- svg.lua — a small SVG 1.1 writer: elements with attributes, text, groups,
-- escaped so that any string (a model name, an error) stays well-formed XML.
--
-- Written here because what charts need is a few shapes and text, and the
-- maintained Lua XML libraries (LuaExpat, SLAXML) parse rather than write.
--
--   local svg = require "apr.svg"
--   local doc = svg.new(800, 600, { title = "..." })
--   local g = doc:group({ transform = "translate(10,10)" })
--   g:rect({ x = 0, y = 0, width = 10, height = 20, fill = "#2b6cb0" })
--   g:text(5, 30, "label", { ["text-anchor"] = "middle" })
--   local text = doc:render()
local M = {}

-- Characters XML 1.0 forbids (control characters other than tab, LF, CR)
-- are dropped, text that is not UTF-8 keeps its ASCII (the rest becomes
-- "?"), and &, <, >, " and ' become entities.
function M.escape(s)
    s = tostring(s):gsub("[%z\1-\8\11\12\14-\31\127]", "")
    if not require("apr.text.utf8").validate(s) then s = s:gsub("[\128-\255]", "?") end
    return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- Numbers with at most two decimals and no trailing zeros: coordinates
-- finer than a hundredth of a pixel only make the file larger.
function M.number(x)
    if x ~= x or x == math.huge or x == -math.huge then error("svg: a coordinate is not finite", 3) end
    local s = string.format("%.2f", x):gsub("0+$", ""):gsub("%.$", "")
    if s == "-0" then s = "0" end
    return s
end

local function attrs(a)
    if not a then return "" end
    local keys = {}
    for k in pairs(a) do keys[#keys + 1] = k end
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do
        local v = a[k]
        if v ~= nil and v ~= false then
            if not tostring(k):match("^[%a_][%w_:%.%-]*$") then error("svg: bad attribute name " .. tostring(k), 3) end
            v = type(v) == "number" and M.number(v) or M.escape(v)
            out[#out + 1] = string.format(' %s="%s"', k, v)
        end
    end
    return table.concat(out)
end

local Node = {}
Node.__index = Node

-- A node's own text is `content` (`text` is the method that adds a text
-- element); attribute tables are copied, so a caller may pass one table
-- to several elements.
local function node(name, a, content)
    local copy
    if a then
        copy = {}
        for k, v in pairs(a) do copy[k] = v end
    end
    return setmetatable({ name = name, attrs = copy, children = {}, content = content }, Node)
end

function Node:add(name, a, content)
    local n = node(name, a, content)
    self.children[#self.children + 1] = n
    return n
end

function Node:group(a) return self:add("g", a) end
function Node:rect(a) return self:add("rect", a) end
function Node:line(x1, y1, x2, y2, a)
    local n = self:add("line", a or {})
    n.attrs.x1, n.attrs.y1, n.attrs.x2, n.attrs.y2 = x1, y1, x2, y2
    return n
end
function Node:circle(cx, cy, r, a)
    local n = self:add("circle", a or {})
    n.attrs.cx, n.attrs.cy, n.attrs.r = cx, cy, r
    return n
end
function Node:text(x, y, s, a)
    local n = self:add("text", a or {}, tostring(s))
    n.attrs.x, n.attrs.y = x, y
    return n
end
-- points: { {x, y}, ... }
function Node:polyline(points, a)
    local p = {}
    for i, pt in ipairs(points) do p[i] = M.number(pt[1]) .. "," .. M.number(pt[2]) end
    local n = self:add("polyline", a or {})
    n.attrs.points = table.concat(p, " ")
    n.attrs.fill = n.attrs.fill or "none"
    return n
end
-- A tooltip for the element it is added to.
function Node:title(s) return self:add("title", nil, tostring(s)) end

local function render(n, out, depth)
    local pad = string.rep("  ", depth)
    if #n.children == 0 and n.content == nil then
        out[#out + 1] = string.format("%s<%s%s/>", pad, n.name, attrs(n.attrs))
    elseif #n.children == 0 then
        out[#out + 1] = string.format("%s<%s%s>%s</%s>", pad, n.name, attrs(n.attrs), M.escape(n.content), n.name)
    else
        out[#out + 1] = string.format("%s<%s%s>", pad, n.name, attrs(n.attrs))
        if n.content then out[#out + 1] = pad .. "  " .. M.escape(n.content) end
        for _, c in ipairs(n.children) do render(c, out, depth + 1) end
        out[#out + 1] = string.format("%s</%s>", pad, n.name)
    end
end

-- new(width, height, { title, background }) -> the document (a Node).
function M.new(width, height, o)
    o = o or {}
    local root = node("svg", {
        xmlns = "http://www.w3.org/2000/svg", version = "1.1", width = width, height = height,
        viewBox = string.format("0 0 %s %s", M.number(width), M.number(height)),
        ["font-family"] = o.font or "DejaVu Sans, Liberation Sans, Arial, sans-serif", ["font-size"] = 12,
    })
    if o.title then root:title(o.title) end
    if o.background ~= false then root:rect({ x = 0, y = 0, width = width, height = height, fill = o.background or "#ffffff" }) end
    function root.render(self)
        local out = { '<?xml version="1.0" encoding="UTF-8"?>' }
        render(self, out, 0)
        return table.concat(out, "\n") .. "\n"
    end
    return root
end

return M
