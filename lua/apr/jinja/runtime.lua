-- jinja/runtime.lua — runs a parsed template: statements write output,
-- expressions evaluate to values with Python semantics (jinja/value.lua).
--
-- Scoping follows jinja2: each loop iteration, macro call, {% with %},
-- filter or set block opens a scope whose assignments do not leak out (an
-- iteration does not see what the previous one assigned); {% if %} opens
-- none. Names resolve through the enclosing scopes, then the render
-- variables, then the globals, except that names jinja/scopes.lua marks
-- start out undefined in their scope.
-- Attribute and item access follow jinja2's ImmutableSandboxedEnvironment:
-- a missing attribute gives Undefined (an error only when used), and
-- methods that would modify a list or dict are refused.
--
-- Work is bounded: output size, loop iterations plus macro calls, and macro
-- recursion depth have limits, so no template can run forever or exhaust
-- memory (defaults in jinja.lua).
local V = require "apr.jinja.value"
local json = require "apr.json"
local methods = require "apr.jinja.methods"
local utf8 = require "apr.text.utf8"

local M = {}

local raise = V.raise
local kind = V.kind
local null = V.null
local Undefined, Namespace, Macro, Builtin, Loop = V.Undefined, V.Namespace, V.Macro, V.Builtin, V.Loop

local BREAK, CONTINUE = "break", "continue"

local Render = {}
Render.__index = Render

------------------------------------------------------------------ output and limits

function Render:write(s)
    local size = self.size + #s
    if size > self.max_output then
        raise("limit", "output exceeds the limit of %d bytes", self.max_output)
    end
    self.size = size
    local buf = self.buf
    buf[#buf + 1] = s
end

-- Runs f with output going to a fresh buffer; returns what it wrote (and
-- f's control signal).
function Render:capture(f, ...)
    local saved = self.buf
    self.buf = {}
    local ok, sig = pcall(f, ...)
    local text = table.concat(self.buf)
    self.buf = saved
    if not ok then error(sig, 0) end
    return text, sig
end

function Render:step()
    local fuel = self.fuel - 1
    if fuel < 0 then
        raise("limit", "template exceeded %d loop iterations and macro calls", self.max_steps)
    end
    self.fuel = fuel
end

------------------------------------------------------------------ scopes

local function new_scope(parent)
    return setmetatable({}, { __index = parent })
end
M.new_scope = new_scope

-- A scope for a new jinja2 frame: the names jinja/scopes.lua found to start
-- out undefined there are bound to Undefined, hiding outer values.
local function frame_scope(parent, undefined_names)
    local scope = new_scope(parent)
    if undefined_names then
        for _, name in ipairs(undefined_names) do scope[name] = V.undefined(name) end
    end
    return scope
end

local function lookup(scope, name)
    local v = scope[name]
    if v == nil then return V.undefined(name) end
    return v
end

------------------------------------------------------------------ attribute and item access

-- obj.name, as the sandbox resolves it: a Python attribute (method) first,
-- then the item obj[name].
-- markupsafe.Markup's str methods return Markup and escape their string
-- arguments (Markup("<b>").replace("b", "<i>") gives "<<i>>"... escaped).
local MARKUP_METHODS = {
    capitalize = true, title = true, lower = true, upper = true, replace = true, ljust = true,
    rjust = true, lstrip = true, rstrip = true, center = true, strip = true, swapcase = true,
    zfill = true, split = true, rsplit = true, splitlines = true, partition = true,
    rpartition = true, join = true, format = true,
}

local function to_markup(v)
    local k = kind(v)
    if k == "str" then return V.markup(v) end
    if k == "list" or k == "tuple" then
        local out = {}
        for i = 1, #v do out[i] = to_markup(v[i]) end
        return k == "list" and V.list(out) or V.tuple(out)
    end
    return v
end

local function escape_arg(v)
    local k = kind(v)
    if k == "str" then return V.html_escape(v) end
    if k == "markup" then return v.text end
    if k == "list" or k == "tuple" then
        local out = {}
        for i = 1, #v do out[i] = escape_arg(v[i]) end
        return k == "list" and V.list(out) or V.tuple(out)
    end
    return v
end

function Render:markup_method(obj, name)
    local m = methods.lookup(obj.text, "str", name)
    if not m or not MARKUP_METHODS[name] then return m end
    return V.builtin("Markup." .. name, function(args, kwargs, rt)
        local escaped = {}
        for i = 1, #args do escaped[i] = escape_arg(args[i]) end
        if kwargs then
            local kw = json.object()
            for _, key in ipairs(json.keys(kwargs)) do kw[key] = escape_arg(kwargs[key]) end
            kwargs = kw
        end
        return to_markup(m.fn(escaped, kwargs, rt))
    end)
end

function Render:getattr(obj, name)
    local k = kind(obj)
    if k == "undefined" then V.fail_undefined(obj) end
    if k == "markup" then
        local m = self:markup_method(obj, name)
        if m then return m end
        obj, k = obj.text, "str"
    end
    if k == "dict" then
        local m, why = methods.lookup(obj, k, name)
        if m then return m end
        if why == "unsafe" then return self:unsafe(obj, name) end
        local v = rawget(obj, name)
        if v ~= nil then return v end
        return V.undefined(name, obj)
    elseif k == "namespace" then
        local v = rawget(obj.attrs, name)
        if v ~= nil then return v end
        return V.undefined(name, obj)
    elseif k == "loop" then
        return self:loop_attr(obj, name)
    elseif k == "tuple" and rawget(obj, "_fields") and obj._fields[name] then
        return obj[obj._fields[name]]
    elseif k == "callable" and getmetatable(obj) == Macro then
        if name == "name" then return obj.name end
        if name == "arguments" then return V.tuple(obj.params) end
        return V.undefined(name, obj)
    end
    if name:sub(1, 1) == "_" then return self:unsafe(obj, name) end
    local m, why = methods.lookup(obj, k, name)
    if m then return m end
    if why == "unsafe" then return self:unsafe(obj, name) end
    return V.undefined(name, obj)
end

function Render:unsafe(obj, name)
    return V.undefined(name, obj,
        string.format("access to attribute '%s' of '%s' object is unsafe.", name, V.type_name(obj)), "security")
end

-- Index of a list/tuple/str item: n (0-based, negative from the end) -> 1-based.
local function seq_index(len, key)
    local n, is_float = V.num(key)
    if not n or is_float then return nil end
    if n < 0 then n = n + len end
    if n < 0 or n >= len then return false end
    return n + 1
end

-- obj[key], as the sandbox resolves it: the item first, then (for string
-- keys) the attribute.
function Render:getitem(obj, key)
    local k = kind(obj)
    if k == "undefined" then V.fail_undefined(obj) end
    if k == "markup" then
        local i = seq_index(utf8.len(obj.text), key)
        if i then return V.slice(obj, i - 1, i) end
        obj, k = obj.text, "str"
    end
    key = V.unwrap_markup(key)
    if k == "dict" then
        local v = rawget(obj, V.dict_key(key))
        if v ~= nil then return v end
    elseif k == "list" or k == "tuple" then
        local i = seq_index(#obj, key)
        if i then return obj[i] end
    elseif k == "str" then
        local len = utf8.len(obj)
        local i = seq_index(len, key)
        if i then return V.slice(obj, i - 1, i) end
    end
    if type(key) == "string" then
        local v = self:getattr(obj, key)
        if getmetatable(v) ~= Undefined or v.hint then return v end
    end
    return V.undefined(key, obj)
end

------------------------------------------------------------------ calls

-- Converts the result of a host (Lua) function into a template value.
local function from_host(v)
    if v == nil then return null end
    return v
end

function Render:call(fn, args, kwargs)
    local mt = getmetatable(fn)
    if mt == Builtin then
        local v = fn.fn(args, kwargs, self)
        if v == nil then return null end
        return v
    elseif mt == Macro then
        return self:call_macro(fn, args, kwargs)
    elseif mt == Loop then
        return self:call_loop(fn, args)
    elseif mt == Undefined then
        V.fail_undefined(fn)
    elseif type(fn) == "function" then
        if kwargs and next(kwargs) then raise("type", "host functions take no keyword arguments") end
        return from_host(fn(unpack(args, 1, #args)))
    end
    raise("type", "'%s' object is not callable", V.type_name(fn))
end

function Render:call_macro(macro, args, kwargs)
    self:step()
    self.macro_depth = self.macro_depth + 1
    if self.macro_depth > self.max_macro_depth then
        raise("limit", "macro calls nested deeper than %d", self.max_macro_depth)
    end
    local node = macro.node
    local scope = frame_scope(macro.scope, node.undefined)
    local params = node.params
    local extra = {}
    for i = 1, #args do
        if i <= #params then scope[params[i]] = args[i] else extra[#extra + 1] = args[i] end
    end
    if #extra > 0 and not node.uses_varargs then
        raise("type", "macro '%s' takes not more than %d argument(s)", macro.name, #params)
    end
    local extra_kw = json.object()
    local caller
    if kwargs then
        for _, name in ipairs(json.keys(kwargs)) do
            local v = kwargs[name]
            local pos
            for i, p in ipairs(params) do if p == name then pos = i end end
            if pos then
                if pos <= #args then
                    raise("type", "macro '%s' got multiple values for argument '%s'", macro.name, name)
                end
                scope[name] = v
            elseif name == "caller" and node.uses_caller then
                caller = v
            elseif node.uses_kwargs then
                extra_kw[name] = v
            else
                raise("type", "macro '%s' takes no keyword argument '%s'", macro.name, name)
            end
        end
    end
    for i, p in ipairs(params) do
        if rawget(scope, p) == nil then
            local default = node.defaults[i]
            if default then
                scope[p] = self:eval(default, scope)
            else
                scope[p] = V.undefined(p, nil,
                    string.format("parameter '%s' was not provided", p))
            end
        end
    end
    scope.varargs = V.tuple(extra)
    scope.kwargs = extra_kw
    if node.uses_caller then
        scope.caller = caller or V.undefined("caller", nil, "No caller defined")
    end
    local line = self.line
    local text = self:capture(self.exec, self, node.body, scope)
    self.line = line
    self.macro_depth = self.macro_depth - 1
    return text
end

------------------------------------------------------------------ loops

function Render:loop_attr(loop, name)
    local i, n = loop.index0, loop.length
    if name == "index" then return i + 1
    elseif name == "index0" then return i
    elseif name == "revindex" then return n - i
    elseif name == "revindex0" then return n - i - 1
    elseif name == "first" then return i == 0
    elseif name == "last" then return i == n - 1
    elseif name == "length" then return n
    elseif name == "depth" then return loop.depth
    elseif name == "depth0" then return loop.depth - 1
    elseif name == "previtem" then
        if i == 0 then return V.undefined("previtem", nil, "there is no previous item") end
        return loop.items[i]
    elseif name == "nextitem" then
        if i == n - 1 then return V.undefined("nextitem", nil, "there is no next item") end
        return loop.items[i + 2]
    elseif name == "cycle" then
        return V.builtin("loop.cycle", function(args)
            if #args == 0 then raise("type", "no items for cycling given") end
            return args[i % #args + 1]
        end)
    elseif name == "changed" then
        return V.builtin("loop.changed", function(args)
            local value = V.tuple(args)
            if loop.last_changed ~= nil and V.eq(loop.last_changed, value) then return false end
            loop.last_changed = value
            return true
        end)
    end
    return V.undefined(name, loop)
end

-- `loop(items)` inside a recursive for: renders the loop body over items,
-- one level deeper, and returns the text.
function Render:call_loop(loop, args)
    if not loop.node.recursive then
        raise("type", "The loop must be marked recursive to be called")
    end
    if #args ~= 1 then raise("type", "loop() takes exactly one argument") end
    self.macro_depth = self.macro_depth + 1
    if self.macro_depth > self.max_macro_depth then
        raise("limit", "recursive loop nested deeper than %d", self.max_macro_depth)
    end
    local text = self:capture(self.run_for, self, loop.node, loop.scope, args[1], loop.depth + 1)
    self.macro_depth = self.macro_depth - 1
    return text
end

-- Binds a for/set target (name, tuple to unpack, or namespace attribute).
function Render:assign(target, value, scope)
    local t = target.type
    if t == "name" then
        scope[target.name] = value
    elseif t == "tuple" then
        local items = V.iterate(value)
        local want = #target.items
        if #items < want then
            raise("value", "not enough values to unpack (expected %d, got %d)", want, #items)
        elseif #items > want then
            raise("value", "too many values to unpack (expected %d)", want)
        end
        for i, sub in ipairs(target.items) do self:assign(sub, items[i], scope) end
    elseif t == "nsref" then
        local ns = lookup(scope, target.name)
        if getmetatable(ns) ~= Namespace then
            raise("runtime", "cannot assign attribute on non-namespace object")
        end
        ns.attrs[target.attr] = value
    end
end

function Render:run_for(node, scope, iterable, depth)
    local items = V.iterate(iterable)
    if node.filter then
        local kept = {}
        for _, item in ipairs(items) do
            self:step()
            local fscope = frame_scope(scope, node.filter_undefined)
            self:assign(node.target, item, fscope)
            if V.truth(self:eval(node.filter, fscope)) then kept[#kept + 1] = item end
        end
        items = kept
    end
    local loop = setmetatable({
        items = items, length = #items, index0 = 0, depth = depth,
        node = node, scope = scope,
    }, Loop)
    -- jinja2 runs the else block unless some iteration reached the end of
    -- the body: an empty loop, but also one whose every iteration ended in
    -- break or continue (its generated code clears the flag last thing in
    -- the body).
    local completed = false
    -- Each iteration starts from the enclosing scope: what the body assigns
    -- is gone at the next iteration (jinja2 does the same).
    for i = 1, #items do
        self:step()
        loop.index0 = i - 1
        local iter_scope = frame_scope(scope, node.body_undefined)
        iter_scope.loop = loop
        self:assign(node.target, items[i], iter_scope)
        local sig = self:exec(node.body, iter_scope)
        if sig == BREAK then break end
        if sig == nil then completed = true end
    end
    if not completed then
        return self:exec(node.else_, frame_scope(scope, node.else_undefined))
    end
end

------------------------------------------------------------------ constant folding

-- Filters jinja2 cannot fold at compile time (they take the context).
local CONTEXT_FILTERS = { map = true, select = true, reject = true, selectattr = true, rejectattr = true }

-- Raised while folding (jinja/fold.lua) when an expression turns out not to
-- be constant (jinja2's nodes.Impossible).
M.IMPOSSIBLE = { kind = "impossible", message = "not a constant" }

function Render:impossible_if(cond)
    if self.folding and cond then error(M.IMPOSSIBLE, 0) end
end

------------------------------------------------------------------ statements

local EXEC = {}

function EXEC.data(self, node) self:write(node.value) end

function EXEC.output(self, node, scope)
    self:write(V.str(self:eval(node.expr, scope)))
end

EXEC["if"] = function(self, node, scope)
    if V.truth(self:eval(node.test, scope)) then
        return self:exec(node.body, scope)
    end
    return self:exec(node.else_, scope)
end

EXEC["for"] = function(self, node, scope)
    -- a break or continue in the else block belongs to an enclosing loop
    return self:run_for(node, scope, self:eval(node.iter, scope), 1)
end

function EXEC.set(self, node, scope)
    self:assign(node.target, self:eval(node.expr, scope), scope)
end

-- Block set, filter and with bodies run inline in jinja2: a break or
-- continue inside one leaves the enclosing loop, dropping the block.
function EXEC.set_block(self, node, scope)
    local text, sig = self:capture(self.exec, self, node.body, frame_scope(scope, node.undefined))
    if sig then return sig end
    local value = text
    if node.filter then value = self:apply_filters(node.filter, text, scope) end
    self:assign(node.target, value, scope)
end

function EXEC.macro(self, node, scope)
    scope[node.name] = setmetatable({ name = node.name, node = node, scope = scope, params = node.params }, Macro)
end

function EXEC.call_block(self, node, scope)
    local caller = setmetatable({ name = "caller", node = node, scope = scope, params = node.params }, Macro)
    local call = node.call
    local fn = self:eval(call.node, scope)
    local args, kwargs = self:call_args(call, scope)
    kwargs = kwargs or json.object()
    kwargs.caller = caller
    self:write(V.str(self:call(fn, args, kwargs)))
end

function EXEC.filter_block(self, node, scope)
    local text, sig = self:capture(self.exec, self, node.body, frame_scope(scope, node.undefined))
    if sig then return sig end
    self:write(V.str(self:apply_filters(node.filter, text, scope)))
end

EXEC.with = function(self, node, scope)
    local inner = frame_scope(scope, node.undefined)
    for i, target in ipairs(node.targets) do
        self:assign(target, self:eval(node.values[i], scope), inner)
    end
    return self:exec(node.body, inner)
end

EXEC["break"] = function() return BREAK end
EXEC["continue"] = function() return CONTINUE end

function EXEC.scope(self, node, scope)
    return self:exec(node.body, frame_scope(scope, node.undefined))
end

-- Runs a statement list; returns "break"/"continue" when one of those
-- ends it early.
function Render:exec(body, scope)
    for i = 1, #body do
        local node = body[i]
        self.line = node.line
        local sig = EXEC[node.type](self, node, scope)
        if sig then return sig end
    end
end

------------------------------------------------------------------ expressions

local EVAL = {}

function EVAL.const(self, node)
    local v = node.value
    if node.is_float then return V.make_float(v) end
    return v
end

function EVAL.name(self, node, scope)
    self:impossible_if(true)
    return lookup(scope, node.name)
end

function EVAL.list(self, node, scope)
    local out = {}
    for i, item in ipairs(node.items) do out[i] = self:eval(item, scope) end
    return V.list(out)
end

function EVAL.tuple(self, node, scope)
    local out = {}
    for i, item in ipairs(node.items) do out[i] = self:eval(item, scope) end
    return V.tuple(out)
end

function EVAL.dict(self, node, scope)
    local out = json.object()
    for i, key in ipairs(node.keys) do
        local k = self:eval(key, scope)
        local kk = kind(k)
        if kk == "list" or kk == "dict" or kk == "undefined" or kk == "namespace" then
            V.check_defined(k)
            raise("type", "unhashable type: '%s'", V.type_name(k))
        end
        out[V.dict_key(k)] = self:eval(node.values[i], scope)
    end
    return out
end

function EVAL.getattr(self, node, scope)
    return self:getattr(self:eval(node.node, scope), node.attr)
end

function EVAL.getitem(self, node, scope)
    local obj = self:eval(node.node, scope)
    local key = node.key
    if key.type == "slice" then
        local k = kind(obj)
        if k == "undefined" then V.fail_undefined(obj) end
        local start = key.start and self:eval(key.start, scope)
        local stop = key.stop and self:eval(key.stop, scope)
        local step = key.step and self:eval(key.step, scope)
        if k == "list" or k == "tuple" or k == "str" or k == "markup" then
            return V.slice(obj, start, stop, step)
        end
        -- jinja2 compiles slicing to a plain Python subscript, so slicing
        -- anything else fails as Python fails; but its constant folding
        -- (M.fold) goes through the sandbox's getitem, which gives
        -- Undefined instead.
        if self.folding then
            return V.undefined("slice", obj, string.format("%s has no element slice(%s, %s, %s)",
                V.object_type_repr(obj), V.repr(start or null), V.repr(stop or null), V.repr(step or null)))
        end
        if k == "dict" then raise("type", "unhashable type: 'slice'") end
        raise("type", "'%s' object is not subscriptable", V.type_name(obj))
    end
    return self:getitem(obj, self:eval(key, scope))
end

-- Evaluates call arguments: positional array and ordered keyword object
-- (nil when there are none), expanding *args and **kwargs.
function Render:call_args(node, scope)
    local args = {}
    for i, a in ipairs(node.args) do args[i] = self:eval(a, scope) end
    if node.dyn_args then
        for _, v in ipairs(V.iterate(self:eval(node.dyn_args, scope))) do args[#args + 1] = v end
    end
    local kwargs
    if #node.kwargs > 0 or node.dyn_kwargs then
        kwargs = json.object()
        for _, kw in ipairs(node.kwargs) do kwargs[kw.name] = self:eval(kw.value, scope) end
        if node.dyn_kwargs then
            local d = self:eval(node.dyn_kwargs, scope)
            if kind(d) ~= "dict" then raise("type", "argument after ** must be a mapping, not %s", V.type_name(d)) end
            for _, k in ipairs(json.keys(d)) do kwargs[k] = d[k] end
        end
    end
    return args, kwargs
end

function EVAL.call(self, node, scope)
    self:impossible_if(true)
    local fn = self:eval(node.node, scope)
    local args, kwargs = self:call_args(node, scope)
    self.line = node.line
    return self:call(fn, args, kwargs)
end

-- Applies a filter node chain whose innermost node has no operand to value.
function Render:apply_filters(node, value, scope)
    if node.node then value = self:apply_filters(node.node, value, scope) end
    local args, kwargs = self:call_args(node, scope)
    return self:filter_fn(node)(value, args, kwargs, self)
end

-- A filter or test the template names but the environment lacks is an
-- error when it runs (jinja2 defers it when it sits inside an if).
function Render:filter_fn(node)
    local f = self.filters[node.name]
    if not f then raise("runtime", "No filter named '%s' found.", node.name) end
    return f
end
function Render:test_fn(node)
    local f = self.tests[node.name]
    if not f then raise("runtime", "No test named '%s' found.", node.name) end
    return f
end

function EVAL.filter(self, node, scope)
    self:impossible_if(CONTEXT_FILTERS[node.name] or node.dyn_args or node.dyn_kwargs)
    local value = self:eval(node.node, scope)
    local args, kwargs = self:call_args(node, scope)
    self.line = node.line
    local v = self:filter_fn(node)(value, args, kwargs, self)
    if v == nil then return null end
    return v
end

function EVAL.test(self, node, scope)
    self:impossible_if(node.dyn_args or node.dyn_kwargs)
    local value = self:eval(node.node, scope)
    local args, kwargs = self:call_args(node, scope)
    self.line = node.line
    return self:test_fn(node)(value, args, kwargs, self) and true or false
end

EVAL["not"] = function(self, node, scope) return not V.truth(self:eval(node.node, scope)) end
function EVAL.neg(self, node, scope) return V.neg(self:eval(node.node, scope)) end
function EVAL.pos(self, node, scope) return V.pos(self:eval(node.node, scope)) end

function EVAL.binop(self, node, scope)
    local a = self:eval(node.left, scope)
    local b = self:eval(node.right, scope)
    self.line = node.line
    return V.arith(node.op, a, b, self.max_output)
end

function EVAL.concat(self, node, scope)
    local parts, size = {}, 0
    for i, item in ipairs(node.items) do
        parts[i] = V.str(self:eval(item, scope))
        size = size + #parts[i]
        if size > self.max_output then raise("limit", "string exceeds the output limit") end
    end
    return table.concat(parts)
end

function EVAL.compare(self, node, scope)
    local left = self:eval(node.expr, scope)
    for _, op in ipairs(node.ops) do
        local right = self:eval(op.expr, scope)
        local ok
        local o = op.op
        if o == "eq" then ok = V.eq(left, right)
        elseif o == "ne" then ok = not V.eq(left, right)
        elseif o == "in" then ok = V.contains(right, left)
        elseif o == "notin" then ok = not V.contains(right, left)
        else ok = V.compare(o, left, right) end
        if not ok then return false end
        left = right
    end
    return true
end

EVAL["and"] = function(self, node, scope)
    local a = self:eval(node.left, scope)
    if not V.truth(a) then return a end
    return self:eval(node.right, scope)
end

EVAL["or"] = function(self, node, scope)
    local a = self:eval(node.left, scope)
    if V.truth(a) then return a end
    return self:eval(node.right, scope)
end

function EVAL.condexpr(self, node, scope)
    if V.truth(self:eval(node.test, scope)) then return self:eval(node.expr1, scope) end
    if node.expr2 then return self:eval(node.expr2, scope) end
    return V.undefined(nil, nil, string.format(
        "the inline if-expression on line %d evaluated to false and no else section was defined.", node.line))
end

function EVAL.slice(self, node)
    raise("type", "slice outside of a subscript")
end

function Render:eval(node, scope)
    return EVAL[node.type](self, node, scope)
end

------------------------------------------------------------------ entry

-- M.renderer(env, limits) -> a render state. env: { filters, tests };
-- limits: max_output, max_steps, max_macro_depth, now. With folding set,
-- expressions evaluate as jinja2's compile-time as_const does.
function M.renderer(env, limits, folding)
    local r = setmetatable({
        buf = {}, size = 0, line = 1, folding = folding,
        fuel = limits.max_steps, max_steps = limits.max_steps,
        max_output = limits.max_output, max_macro_depth = limits.max_macro_depth,
        macro_depth = 0, filters = env.filters, tests = env.tests, now = limits.now,
    }, Render)
    r.getattr_fn = function(obj, name) return r:getattr(obj, name) end
    r.getitem_fn = function(obj, key) return r:getitem(obj, key) end
    return r
end

-- M.run(body, scope, env, limits) -> text. Errors propagate as tables with
-- kind, message and (set here) line.
function M.run(body, scope, env, limits)
    local r = M.renderer(env, limits)
    if body.undefined then
        for _, name in ipairs(body.undefined) do scope[name] = V.undefined(name) end
    end
    local ok, err = pcall(r.exec, r, body, scope)
    if not ok then
        if type(err) ~= "table" then
            local msg = tostring(err)
            if msg:find("stack overflow", 1, true) then
                err = { kind = "limit", message = "template nested too deeply (Lua stack overflow)" }
            else
                err = { kind = "internal", message = msg }
            end
        end
        err.line = err.line or r.line
        error(err, 0)
    end
    return table.concat(r.buf)
end

return M
