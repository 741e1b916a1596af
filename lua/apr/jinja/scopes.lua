-- jinja/scopes.lua — jinja2's compile-time name resolution, reproduced.
--
-- jinja2 compiles each frame (the template, a loop body, a macro, a with
-- or filter or set block) to Python code whose locals are decided before
-- anything runs (jinja2/idtracking.py). A name a frame assigns is local to
-- it for the whole frame; when no enclosing frame mentions the name, that
-- local starts out undefined, even if the caller passed a variable of that
-- name. So in
--     {% for m in messages %}{{ x }}{% endfor %}{% set x = 1 %}
-- the loop prints nothing for x, whatever x was passed. A name first read
-- in a frame starts from the render variables; one first assigned where an
-- enclosing frame has it starts from the enclosing value (the runtime's
-- scope chain already gives both). This pass marks, on every node that
-- opens a frame, the names that start out undefined there:
--   template body -> body.undefined; for -> body_undefined, else_undefined,
--   filter_undefined; macro, call_block, with, filter_block, set_block,
--   scope -> node.undefined.
local M = {}

local Frame = {}
Frame.__index = Frame

local function new_frame(parent)
    return setmetatable({ refs = {}, stores = {}, parent = parent }, Frame)
end

function Frame:find(name)
    local f = self
    while f do
        if f.refs[name] then return f.refs[name] end
        f = f.parent
    end
end

function Frame:load(name)
    if not self:find(name) then self.refs[name] = "resolve" end
end

function Frame:store(name)
    self.stores[name] = true
    if not self.refs[name] then
        self.refs[name] = (self.parent and self.parent:find(name)) and "alias" or "undefined"
    end
end

function Frame:param(name)
    self.stores[name] = true
    self.refs[name] = "param"
end

function Frame:copy()
    local c = new_frame(self.parent)
    for k, v in pairs(self.refs) do c.refs[k] = v end
    for k in pairs(self.stores) do c.stores[k] = true end
    return c
end

-- The names that start out undefined in a finished frame.
function Frame:undefined_names()
    local out = {}
    for name, how in pairs(self.refs) do
        if how == "undefined" then out[#out + 1] = name end
    end
    table.sort(out)
    return out
end

local visit_statements, visit_expr

-- Loads of every name an expression reads, in order.
function visit_expr(frame, node)
    if type(node) ~= "table" then return end
    if node.type == "name" then
        frame:load(node.name)
        return
    end
    for k, v in pairs(node) do
        if type(v) == "table" and k ~= "constant" then visit_expr(frame, v) end
    end
end

local function visit_target(frame, target, as_param)
    if target.type == "name" then
        if as_param then frame:param(target.name) else frame:store(target.name) end
    elseif target.type == "tuple" then
        for _, t in ipairs(target.items) do visit_target(frame, t, as_param) end
    elseif target.type == "nsref" then
        frame:load(target.name)
    end
end

-- Analyses a new frame for a nested block; returns its undefined names.
local function nested(parent, setup)
    local f = new_frame(parent)
    setup(f)
    return f:undefined_names()
end

-- If branches: a name every branch assigns is a plain store; one only some
-- branches assign starts from the enclosing value (jinja2's branch_update).
local function visit_if(frame, node)
    visit_expr(frame, node.test)
    local branches = {}
    for i, body in ipairs({ node.body, node.else_ }) do
        local copy = frame:copy()
        visit_statements(copy, body)
        branches[i] = copy
    end
    local counts = {}
    for _, b in ipairs(branches) do
        for name in pairs(b.stores) do
            if not frame.stores[name] then counts[name] = (counts[name] or 0) + 1 end
        end
    end
    for _, b in ipairs(branches) do
        for k, v in pairs(b.refs) do frame.refs[k] = v end
        for k in pairs(b.stores) do frame.stores[k] = true end
    end
    for name, n in pairs(counts) do
        if n < #branches then
            frame.refs[name] = (frame.parent and frame.parent:find(name)) and "alias" or "resolve"
        end
    end
end

local VISIT = {}

function VISIT.output(frame, node) visit_expr(frame, node.expr) end
VISIT["if"] = visit_if

VISIT["for"] = function(frame, node)
    visit_expr(frame, node.iter)
    node.body_undefined = nested(frame, function(f)
        f:param("loop")
        visit_target(f, node.target, true)
        visit_statements(f, node.body)
    end)
    node.else_undefined = nested(frame, function(f) visit_statements(f, node.else_) end)
    node.filter_undefined = nested(frame, function(f)
        visit_target(f, node.target, true)
        visit_expr(f, node.filter)
    end)
end

function VISIT.set(frame, node)
    visit_expr(frame, node.expr)
    visit_target(frame, node.target)
end

function VISIT.set_block(frame, node)
    visit_target(frame, node.target)
    node.undefined = nested(frame, function(f) visit_statements(f, node.body) end)
end

local function macro_frame(frame, node)
    node.undefined = nested(frame, function(f)
        for _, p in ipairs(node.params) do f:param(p) end
        for _, special in ipairs({ "varargs", "kwargs", "caller" }) do f:param(special) end
        for _, d in pairs(node.defaults) do visit_expr(f, d) end
        visit_statements(f, node.body)
    end)
end

function VISIT.macro(frame, node)
    frame:store(node.name)
    macro_frame(frame, node)
end

function VISIT.call_block(frame, node)
    visit_expr(frame, node.call)
    macro_frame(frame, node)
end

function VISIT.filter_block(frame, node)
    visit_expr(frame, node.filter)
    node.undefined = nested(frame, function(f) visit_statements(f, node.body) end)
end

VISIT.with = function(frame, node)
    for _, v in ipairs(node.values) do visit_expr(frame, v) end
    node.undefined = nested(frame, function(f)
        for _, t in ipairs(node.targets) do visit_target(f, t) end
        visit_statements(f, node.body)
    end)
end

function VISIT.scope(frame, node)
    node.undefined = nested(frame, function(f) visit_statements(f, node.body) end)
end

function visit_statements(frame, body)
    for _, node in ipairs(body) do
        local v = VISIT[node.type]
        if v then v(frame, node) end
    end
end

-- M.analyze(body): annotates the template body and its frame-opening nodes.
function M.analyze(body)
    local root = new_frame(nil)
    visit_statements(root, body)
    body.undefined = root:undefined_names()
    return body
end

return M
