-- jinja.lua — a Jinja2 interpreter for chat templates, in pure Lua.
--
--   local jinja = require "apr.jinja"
--   local tmpl, err = jinja.compile(source)            -- nil, message on a syntax error
--   local text, err = tmpl:render({ messages = ..., add_generation_prompt = true })
--   local text, err = jinja.render(source, vars)       -- compiles once per source
--
-- It renders what Hugging Face's Python stack renders: jinja2's
-- ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the
-- loopcontrols extension, the tojson filter of transformers (json.dumps,
-- key order kept, ensure_ascii=False) and the globals raise_exception and
-- strftime_now. docs/chat-templates.md lists the supported language.
--
-- Errors never escape as Lua errors: compile and render return nil, a
-- message "line N: ..." and a table { kind, line, message }. kind is
-- "syntax" (compile), "raise" (raise_exception), "undefined", "type",
-- "value", "security", "zero_division", "limit", ... or "internal" (a bug).
local lexer = require "apr.jinja.lexer"
local parser = require "apr.jinja.parser"
local runtime = require "apr.jinja.runtime"
local scopes = require "apr.jinja.scopes"
local fold = require "apr.jinja.fold"
local V = require "apr.jinja.value"
local json = require "apr.json"

local jinja = {}

jinja.filters = require "apr.jinja.filters"
jinja.tests = require "apr.jinja.tests"

-- Limits that keep any template finite (each can be overridden per render).
jinja.defaults = {
    max_output = 16 * 1024 * 1024, -- bytes of rendered text (and of any string built)
    max_steps = 1000000,           -- loop iterations + macro calls
    max_macro_depth = 100,         -- nested macro calls / recursive loop levels
}

local raise = V.raise

------------------------------------------------------------------ globals

-- jinja2's sandbox refuses ranges longer than this (sandbox.MAX_RANGE).
local MAX_RANGE = 100000

local function range(args)
    local start, stop, step = 0, nil, 1
    if #args == 1 then stop = V.index(args[1])
    elseif #args == 2 then start, stop = V.index(args[1]), V.index(args[2])
    elseif #args == 3 then start, stop, step = V.index(args[1]), V.index(args[2]), V.index(args[3])
    else raise("type", "range expected at most 3 arguments, got %d", #args) end
    if step == 0 then raise("value", "range() arg 3 must not be zero") end
    local count = 0
    if step > 0 and stop > start then count = math.floor((stop - start - 1) / step) + 1
    elseif step < 0 and stop < start then count = math.floor((start - stop - 1) / -step) + 1 end
    if count > MAX_RANGE then
        raise("overflow", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", MAX_RANGE)
    end
    local out = {}
    for i = 1, count do out[i] = start + (i - 1) * step end
    return V.list(out)
end

local function dict(args, kwargs)
    local out = json.object()
    if #args > 1 then raise("type", "dict expected at most 1 argument, got %d", #args) end
    if args[1] ~= nil then
        local src = args[1]
        if V.kind(src) == "dict" then
            for _, k in ipairs(json.keys(src)) do out[k] = src[k] end
        else
            for i, pair in ipairs(V.iterate(src)) do
                local kv = V.iterate(pair)
                if #kv ~= 2 then
                    raise("value", "dictionary update sequence element #%d has length %d; 2 is required", i - 1, #kv)
                end
                out[V.dict_key(kv[1])] = kv[2]
            end
        end
    end
    if kwargs then
        for _, k in ipairs(json.keys(kwargs)) do out[k] = kwargs[k] end
    end
    return out
end

-- strftime_now(fmt): datetime.now().strftime(fmt). os.date handles one
-- conversion at a time, so glibc's flags (%-d, %_H, %^a) are applied here.
local function strftime(fmt, now)
    local out = fmt:gsub("%%([-_0^#]?)(%a)", function(flag, conv)
        local s = os.date("%" .. conv, now)
        if flag == "-" then s = s:gsub("^[0 ]+(.)", "%1")
        elseif flag == "_" then s = s:gsub("^0+(.)", function(c) return " " .. c end)
        elseif flag == "^" then s = s:upper() end
        return s
    end)
    return (out:gsub("%%%%", "%%"))
end

local function make_globals(rt_now)
    local g = {}
    g.range = V.builtin("range", range)
    g.dict = V.builtin("dict", dict)
    g.namespace = V.builtin("namespace", function(args, kwargs)
        return V.namespace(dict(args, kwargs))
    end)
    g.raise_exception = V.builtin("raise_exception", function(args)
        error({ kind = "raise", message = V.str(args[1] == nil and V.null or args[1]) }, 0)
    end)
    g.strftime_now = V.builtin("strftime_now", function(args)
        if type(args[1]) ~= "string" then raise("type", "strftime() argument 1 must be str, not %s", V.type_name(args[1])) end
        return strftime(args[1], rt_now or os.time())
    end)
    g.joiner = V.builtin("joiner", function(args)
        local sep = args[1] == nil and ", " or V.str(args[1])
        local used = false
        return V.builtin("joiner", function()
            if not used then used = true; return "" end
            return sep
        end)
    end)
    g.cycler = V.builtin("cycler", function(args)
        local items, pos = args, 1
        if #items == 0 then raise("runtime", "at least one item has to be provided") end
        local ns = V.namespace()
        ns.attrs.current = items[1]
        ns.attrs.next = V.builtin("next", function()
            local v = items[pos]
            pos = pos % #items + 1
            ns.attrs.current = items[pos]
            return v
        end)
        ns.attrs.reset = V.builtin("reset", function()
            pos = 1
            ns.attrs.current = items[1]
            return V.null
        end)
        return ns
    end)
    return g
end

------------------------------------------------------------------ input values

local MAX_INPUT_DEPTH = 200

-- Turns caller-supplied Lua values into the interpreter's typed values: plain
-- tables become json arrays/objects (recursively), nil-free and acyclic.
local function from_lua(v, depth)
    local t = type(v)
    if t == "string" or t == "number" or t == "boolean" or t == "function" then return v end
    if v == V.null then return v end
    if t ~= "table" then
        error({ kind = "type", message = "unsupported value of type " .. t .. " in template variables" }, 0)
    end
    if depth > MAX_INPUT_DEPTH then
        error({ kind = "value", message = "template variables nested too deeply (or cyclic)" }, 0)
    end
    local mt = getmetatable(v)
    local k = V.kind(v)
    if k == "list" then
        local out = {}
        for i = 1, #v do out[i] = from_lua(v[i], depth + 1) end
        return json.array(out)
    elseif k == "dict" then
        local out = json.object()
        for _, key in ipairs(json.keys(v)) do
            local item = v[key]
            if item ~= nil then out[key] = from_lua(item, depth + 1) end
        end
        return out
    elseif k == "tuple" then
        local out = {}
        for i = 1, #v do out[i] = from_lua(v[i], depth + 1) end
        return V.tuple(out)
    elseif mt ~= nil and k ~= "object" then
        return v -- json.float/bigint boxes, namespaces, builtins, undefined
    end
    error({ kind = "type", message = "unsupported table (metatable " .. tostring(mt) .. ") in template variables" }, 0)
end
jinja.from_lua = from_lua

------------------------------------------------------------------ errors

local function failure(err)
    if type(err) ~= "table" then
        -- Expressions thousands of operators long recurse deeper than Lua's
        -- stack allows; that is a limit of the template, not a bug.
        if tostring(err):find("stack overflow", 1, true) then
            err = { kind = "limit", message = "template nested too deeply (Lua stack overflow)" }
        else
            err = { kind = "internal", message = tostring(err) }
        end
    end
    local msg = err.message or "unknown error"
    if err.kind == "syntax" then msg = "syntax error: " .. msg end
    if err.kind == "internal" then msg = "internal error: " .. msg end
    if err.line then msg = string.format("line %d: %s", err.line, msg) end
    return nil, msg, err
end

------------------------------------------------------------------ templates

local Template = {}
Template.__index = Template

local filter_names, test_names = {}, {}
for name in pairs(jinja.filters) do filter_names[name] = true end
for name in pairs(jinja.tests) do test_names[name] = true end

-- jinja.compile(source [, opts]) -> template | nil, message, err
-- opts: trim_blocks, lstrip_blocks (default true), keep_trailing_newline
-- (default false): Hugging Face's settings unless changed.
function jinja.compile(source, opts)
    if type(source) ~= "string" then error("jinja.compile: source must be a string", 2) end
    local ok, body = pcall(function()
        local tree = parser.parse(lexer.tokenize(source, opts), filter_names, test_names)
        scopes.analyze(tree)
        return fold.fold(tree, { filters = jinja.filters, tests = jinja.tests })
    end)
    if not ok then return failure(body) end
    return setmetatable({ body = body, source = source }, Template)
end

-- template:render(vars [, opts]) -> text | nil, message, err
-- vars: name -> value (Lua values; see apr.json for ordered objects and
-- Python-typed numbers). opts: max_output, max_steps, max_macro_depth,
-- now (epoch seconds for strftime_now; default the current time).
function Template:render(vars, opts)
    opts = opts or {}
    if vars ~= nil and type(vars) ~= "table" then error("template:render: vars must be a table", 2) end
    local limits = {
        max_output = opts.max_output or jinja.defaults.max_output,
        max_steps = opts.max_steps or jinja.defaults.max_steps,
        max_macro_depth = opts.max_macro_depth or jinja.defaults.max_macro_depth,
        now = opts.now,
    }
    local ok, text = pcall(function()
        local globals = make_globals(opts.now)
        local var_scope = runtime.new_scope(globals)
        for name, v in pairs(vars or {}) do
            if type(name) == "string" then var_scope[name] = from_lua(v, 0) end
        end
        local env = { filters = jinja.filters, tests = jinja.tests }
        return runtime.run(self.body, runtime.new_scope(var_scope), env, limits)
    end)
    if not ok then return failure(text) end
    return text
end

-- Compiled templates by source, so a model's template is parsed once.
local cache, cache_size = {}, 0
local CACHE_MAX = 64

-- jinja.render(source, vars [, opts]) -> text | nil, message, err
function jinja.render(source, vars, opts)
    opts = opts or {}
    local key = source
    if opts.trim_blocks == false or opts.lstrip_blocks == false or opts.keep_trailing_newline then
        key = string.format("%s\0%s%s%s", source, tostring(opts.trim_blocks), tostring(opts.lstrip_blocks),
            tostring(opts.keep_trailing_newline))
    end
    local tmpl = cache[key]
    if not tmpl then
        local err, detail
        tmpl, err, detail = jinja.compile(source, opts)
        if not tmpl then return nil, err, detail end
        if cache_size >= CACHE_MAX then cache, cache_size = {}, 0 end
        cache[key] = tmpl
        cache_size = cache_size + 1
    end
    return tmpl:render(vars, opts)
end

return jinja
