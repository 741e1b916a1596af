-- jinja/value.lua — Python's value semantics over Lua values, as jinja2
-- running on CPython shows them to a template.
--
-- A template sees these Lua values as these Python types:
--   json.null (= cjson.null)       None
--   true / false                   bool
--   number, integral and finite    int   (json.bigint boxes big ones)
--   other numbers, json.float box  float
--   string                         str   (UTF-8; indexing is by code point)
--   json.array, plain 1..n table   list
--   json.object, other plain table dict  (json.object keeps key order)
--   V.tuple                        tuple
--   V.undefined                    jinja2's default Undefined
--   V.namespace, V.builtin, V.macro, the loop object: jinja2's own types
--
-- Errors are raised as tables { kind = ..., message = ... } that the
-- runtime completes with the template line; kind is "type", "value",
-- "undefined", "security", "zero_division" or "limit".
local json = require "apr.json"
local utf8 = require "apr.text.utf8"

local V = {}

local floor, huge = math.floor, math.huge
local format, concat, sub, byte = string.format, table.concat, string.sub, string.byte

local null = json.null
V.null = null

function V.raise(kind, fmt, ...)
    local msg = select("#", ...) > 0 and format(fmt, ...) or fmt
    error({ kind = kind, message = msg }, 0)
end
local raise = V.raise

------------------------------------------------------------------ types

local Undefined = { __name = "Undefined" }
local Tuple = { __name = "tuple" }
local Namespace = { __name = "Namespace" }
local Builtin = { __name = "builtin_function_or_method" }
local Macro = { __name = "Macro" }
local Loop = { __name = "LoopContext" }
local View = { __name = "dict_view" }
local Iterator = { __name = "iterator" }
local Markup = { __name = "Markup" }
V.Markup = Markup
V.Undefined, V.Tuple, V.Namespace, V.Builtin, V.Macro, V.Loop = Undefined, Tuple, Namespace, Builtin, Macro, Loop

-- An undefined value. name/obj say what was looked up where (for the
-- message); hint replaces the message; exc is the error kind when used.
function V.undefined(name, obj, hint, exc)
    return setmetatable({ name = name, obj = obj, hint = hint, exc = exc }, Undefined)
end

function V.tuple(items)
    return setmetatable(items or {}, Tuple)
end

function V.list(items) return json.array(items or {}) end
function V.dict() return json.object() end

function V.namespace(attrs)
    return setmetatable({ attrs = attrs or json.object() }, Namespace)
end

-- dict.items()/keys()/values(): iterable and sized, not indexable, printed
-- as dict_items([...]). name is "dict_items", "dict_keys" or "dict_values".
function V.view(name, items)
    items.view = name
    return setmetatable(items, View)
end

-- A one-shot iterator, as jinja2's map/select/unique/items filters (Python
-- generators) and reversed() return: produce() computes the items on first
-- use; what one use consumes is gone for the next. type_name is Python's
-- ("generator", "list_reverseiterator", ...).
function V.iterator(type_name, produce)
    return setmetatable({ type_name = type_name, produce = produce, pos = 1 }, Iterator)
end

-- The items an iterator has left, consuming them.
local function drain(it)
    if it.produce then
        it.items = it.produce()
        it.produce = nil
    end
    local out = {}
    for i = it.pos, #it.items do out[#out + 1] = it.items[i] end
    it.pos = #it.items + 1
    return out
end

-- The next item of an iterator, or nil when it is exhausted.
function V.next_item(it)
    if it.produce then
        it.items = it.produce()
        it.produce = nil
    end
    local v = it.items[it.pos]
    if v ~= nil then it.pos = it.pos + 1 end
    return v
end

-- markupsafe.Markup: text that is already safe. It prints as itself, and
-- `+`/`%` with a plain string escape that string (|safe makes one).
function V.markup(text) return setmetatable({ text = text }, Markup) end

local HTML_ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&#34;", ["'"] = "&#39;" }
function V.html_escape(s) return (s:gsub("[&<>\"']", HTML_ESCAPES)) end

-- A function the template can call: fn(args, kwargs) with args a Lua array
-- and kwargs a table name -> value (nil when none were passed).
function V.builtin(name, fn)
    return setmetatable({ name = name, fn = fn }, Builtin)
end

local kinds_by_mt = {
    [Undefined] = "undefined", [Tuple] = "tuple", [Namespace] = "namespace",
    [Builtin] = "callable", [Macro] = "callable", [Loop] = "loop", [View] = "view",
    [Iterator] = "iterator", [Markup] = "markup",
}

-- The Python type of a Lua value, as one of: none bool int float str list
-- tuple dict view iterator markup undefined namespace callable loop object.
function V.kind(v)
    local t = type(v)
    if t == "string" then return "str" end
    if t == "number" then
        if json.is_int(v) then return "int" end
        return "float"
    end
    if t == "boolean" then return "bool" end
    if v == null then return "none" end
    if t == "table" then
        local k = kinds_by_mt[getmetatable(v)]
        if k then return k end
        k = json.kind(v)
        if k then return k end
        return "object"
    end
    if t == "function" then return "callable" end
    if t == "nil" then return "undefined" end
    return "object"
end
local kind = V.kind

local TYPE_NAMES = {
    none = "NoneType", bool = "bool", int = "int", float = "float", str = "str",
    list = "list", tuple = "tuple", dict = "dict", undefined = "Undefined",
    namespace = "Namespace", loop = "LoopContext", object = "object",
}

-- type(v).__name__
function V.type_name(v)
    local k = kind(v)
    if k == "view" then return v.view end
    if k == "iterator" then return v.type_name end
    if k == "markup" then return "Markup" end
    if k == "callable" then
        if getmetatable(v) == Macro then return "Macro" end
        return "builtin_function_or_method"
    end
    return TYPE_NAMES[k]
end

-- jinja2.utils.object_type_repr: how Undefined messages name an object.
function V.object_type_repr(v)
    if v == null then return "None" end
    local k = kind(v)
    if k == "namespace" then return "jinja2.utils.Namespace object" end
    if k == "loop" then return "jinja2.runtime.LoopContext object" end
    if k == "undefined" then return "jinja2.runtime.Undefined object" end
    if k == "markup" then return "markupsafe.Markup object" end
    return V.type_name(v) .. " object"
end

------------------------------------------------------------------ undefined

-- The message jinja2's Undefined gives when it is used.
function V.undefined_message(u)
    if u.hint then return u.hint end
    if u.obj == nil then
        return format("'%s' is undefined", tostring(u.name))
    end
    if type(u.name) ~= "string" then
        return format("%s has no element %s", V.object_type_repr(u.obj), V.repr(u.name))
    end
    return format("'%s' has no attribute %s", V.object_type_repr(u.obj), V.repr(u.name))
end

function V.fail_undefined(u)
    raise(u.exc or "undefined", V.undefined_message(u))
end

-- Raises when v is undefined (for operations that Undefined refuses).
local function check_defined(v)
    if getmetatable(v) == Undefined then V.fail_undefined(v) end
    return v
end
V.check_defined = check_defined

------------------------------------------------------------------ numbers

-- A float result: boxed when its value is integral (or -0.0) so that it
-- still prints as a float.
local function make_float(x)
    if json.is_int(x) then return json.float(x) end
    return x
end
V.make_float = make_float

-- An arithmetic result. Integers past 2^53 are boxed with their digits
-- (exact for what a double holds; Python's arbitrary precision is not
-- emulated beyond that).
local function number_result(x, is_float)
    if is_float then return make_float(x) end
    if x == 0 then return 0 end
    if (x >= 2 ^ 53 or x <= -2 ^ 53) and x > -huge and x < huge then
        return json.bigint(format("%.0f", x))
    end
    return x
end
V.int_result = function(x) return number_result(x, false) end

-- The number in v and whether it is a float; nil for non-numbers. bool
-- counts as int, as in Python.
local function num(v)
    local t = type(v)
    if t == "number" then
        return v, not json.is_int(v)
    elseif t == "boolean" then
        return v and 1 or 0, false
    elseif t == "table" then
        local k = json.kind(v)
        if k == "float" then return v.value, true end
        if k == "int" then return v.value, false end
    end
    return nil
end
V.num = num

-- Python's operator.index(): v as an int where one is required (range(),
-- str.center(), ...); floats and other types raise TypeError.
function V.index(v)
    local n, is_float = num(v)
    if not n or is_float then
        check_defined(v)
        raise("type", "'%s' object cannot be interpreted as an integer", V.type_name(v))
    end
    return n
end

-- Python's int(): text (optionally with base) or a number (truncated).
function V.to_int(v, base)
    if getmetatable(v) == Markup then v = v.text end
    if type(v) == "string" then
        local s = utf8.strip(v):gsub("_", ""):lower()
        base = base or 10
        local sign = ""
        if sub(s, 1, 1) == "-" or sub(s, 1, 1) == "+" then sign, s = sub(s, 1, 1), sub(s, 2) end
        if base == 0 or base == 16 or base == 8 or base == 2 then
            local p = sub(s, 1, 2)
            if p == "0x" and (base == 0 or base == 16) then s, base = sub(s, 3), 16
            elseif p == "0o" and (base == 0 or base == 8) then s, base = sub(s, 3), 8
            elseif p == "0b" and (base == 0 or base == 2) then s, base = sub(s, 3), 2
            elseif base == 0 then base = 10 end
        end
        if s == "" or not s:match("^%w+$") then return nil end
        local n = tonumber(s, base)
        if not n then return nil end
        return sign == "-" and -n or n
    end
    local n = num(v)
    if not n or n ~= n or n == huge or n == -huge then return nil end
    return number_result(n >= 0 and floor(n) or -floor(-n), false)
end

function V.to_float(v)
    if getmetatable(v) == Markup then v = v.text end
    if type(v) == "string" then
        local s = utf8.strip(v):lower():gsub("_", "")
        if s == "inf" or s == "+inf" or s == "infinity" or s == "+infinity" then return huge end
        if s == "-inf" or s == "-infinity" then return -huge end
        if s == "nan" or s == "+nan" or s == "-nan" then return 0 / 0 end
        if not s:match("^[-+]?%d*%.?%d*e?[-+]?%d*$") then return nil end
        return tonumber(s)
    end
    return (num(v))
end

------------------------------------------------------------------ strings

-- Python string repr: quotes chosen as Python chooses them, escapes for
-- non-printable characters. Printability follows Unicode categories C* and
-- Z* (but space) for the ranges listed; unlisted unassigned code points
-- print as themselves (Python would escape them).
local NONPRINT_RANGES = {
    { 0x7F, 0xA0 }, { 0xAD, 0xAD }, { 0x600, 0x605 }, { 0x61C, 0x61C }, { 0x6DD, 0x6DD },
    { 0x70F, 0x70F }, { 0x180E, 0x180E }, { 0x1680, 0x1680 }, { 0x2000, 0x200F },
    { 0x2028, 0x202F }, { 0x205F, 0x2064 }, { 0x2066, 0x206F }, { 0x3000, 0x3000 },
    { 0xD800, 0xF8FF }, { 0xFEFF, 0xFEFF }, { 0xFFF9, 0xFFFB }, { 0xFFFE, 0xFFFF },
    { 0x110BD, 0x110BD }, { 0x1BCA0, 0x1BCA3 }, { 0x1D173, 0x1D17A },
    { 0xE0000, 0xE0FFF }, { 0xF0000, 0x10FFFF },
}
local function printable(cp)
    if cp < 0x20 then return false end
    if cp < 0x7F then return true end
    for _, r in ipairs(NONPRINT_RANGES) do
        if cp >= r[1] and cp <= r[2] then return false end
    end
    return true
end

function V.str_repr(s)
    local quote = "'"
    if s:find("'", 1, true) and not s:find('"', 1, true) then quote = '"' end
    local out = { quote }
    local i = 1
    while i <= #s do
        local cp, len = utf8.decode(s, i)
        local ch = sub(s, i, i + len - 1)
        if ch == "\\" then out[#out + 1] = "\\\\"
        elseif ch == quote then out[#out + 1] = "\\" .. quote
        elseif ch == "\n" then out[#out + 1] = "\\n"
        elseif ch == "\r" then out[#out + 1] = "\\r"
        elseif ch == "\t" then out[#out + 1] = "\\t"
        elseif len == 1 and cp >= 0x80 then
            -- a stray byte: Python would show the surrogateescape form
            out[#out + 1] = format("\\udc%02x", cp)
        elseif printable(cp) then out[#out + 1] = ch
        elseif cp < 0x100 then out[#out + 1] = format("\\x%02x", cp)
        elseif cp < 0x10000 then out[#out + 1] = format("\\u%04x", cp)
        else out[#out + 1] = format("\\U%08x", cp) end
        i = i + len
    end
    out[#out + 1] = quote
    return concat(out)
end

------------------------------------------------------------------ str() and repr()

local MAX_NESTING = 200

local to_str, to_repr

local function container_repr(v, k, depth)
    if depth > MAX_NESTING then raise("value", "value nested too deeply to print") end
    if k == "list" or k == "tuple" then
        local parts = {}
        for i = 1, #v do parts[i] = to_repr(v[i], depth + 1) end
        if k == "list" then return "[" .. concat(parts, ", ") .. "]" end
        if #parts == 1 then return "(" .. parts[1] .. ",)" end
        return "(" .. concat(parts, ", ") .. ")"
    end
    local parts = {}
    for _, key in ipairs(json.keys(v)) do
        parts[#parts + 1] = to_repr(key, depth + 1) .. ": " .. to_repr(v[key], depth + 1)
    end
    return "{" .. concat(parts, ", ") .. "}"
end

-- str(v) as Python gives it.
function to_str(v, depth)
    depth = depth or 0
    local k = kind(v)
    if k == "str" then return v
    elseif k == "undefined" then return ""
    elseif k == "none" then return "None"
    elseif k == "bool" then return v and "True" or "False"
    elseif k == "int" then return type(v) == "table" and v.text or json.int_repr(v)
    elseif k == "float" then return json.float_repr(num(v))
    elseif k == "list" or k == "tuple" or k == "dict" then return container_repr(v, k, depth)
    elseif k == "view" then return v.view .. "(" .. container_repr(v, "list", depth) .. ")"
    elseif k == "markup" then return v.text
    elseif k == "iterator" then return "<" .. v.type_name .. " object>"
    elseif k == "namespace" then return "<Namespace " .. container_repr(v.attrs, "dict", depth) .. ">"
    elseif k == "loop" then return format("<LoopContext %d/%d>", v.index0 + 1, v.length)
    elseif k == "callable" then
        if getmetatable(v) == Macro then return format("<Macro '%s'>", v.name) end
        return format("<built-in function %s>", type(v) == "table" and v.name or "function")
    end
    return tostring(v)
end

function to_repr(v, depth)
    local k = kind(v)
    if k == "str" then return V.str_repr(v) end
    if k == "undefined" then return "Undefined" end
    if k == "markup" then return "Markup(" .. V.str_repr(v.text) .. ")" end
    return to_str(v, depth)
end
V.str, V.repr = to_str, to_repr

------------------------------------------------------------------ truth, equality, order

function V.truth(v)
    local k = kind(v)
    if k == "bool" then return v end
    if k == "none" or k == "undefined" then return false end
    if k == "str" then return v ~= "" end
    if k == "markup" then return v.text ~= "" end
    if k == "int" or k == "float" then return num(v) ~= 0 end
    if k == "list" or k == "tuple" or k == "view" then return #v > 0 end
    if k == "dict" then return next(v) ~= nil end
    return true
end

local NUMERIC = { bool = true, int = true, float = true }

local function unwrap(v)
    if getmetatable(v) == Markup then return v.text end
    return v
end
V.unwrap_markup = unwrap

local function eq(a, b, depth)
    depth = depth or 0
    a, b = unwrap(a), unwrap(b)
    if depth > MAX_NESTING then raise("value", "values nested too deeply to compare") end
    local ka, kb = kind(a), kind(b)
    if NUMERIC[ka] and NUMERIC[kb] then return num(a) == num(b) end
    if ka ~= kb then return false end
    if ka == "str" or ka == "none" or ka == "undefined" then return ka ~= "str" or a == b end
    if ka == "list" or ka == "tuple" then
        if #a ~= #b then return false end
        for i = 1, #a do
            if not eq(a[i], b[i], depth + 1) then return false end
        end
        return true
    end
    if ka == "dict" then
        local ak, bk = json.keys(a), json.keys(b)
        if #ak ~= #bk then return false end
        for _, key in ipairs(ak) do
            local bv = b[key]
            if bv == nil or not eq(a[key], bv, depth + 1) then return false end
        end
        return true
    end
    if ka == "namespace" then return rawequal(a, b) end
    return rawequal(a, b)
end
V.eq = eq

local OP_SYMBOL = { lt = "<", lteq = "<=", gt = ">", gteq = ">=" }

-- Python's ordering comparisons (op: lt, lteq, gt, gteq).
local function compare(op, a, b, depth)
    depth = depth or 0
    a, b = unwrap(a), unwrap(b)
    check_defined(a)
    check_defined(b)
    local ka, kb = kind(a), kind(b)
    local x, y
    if NUMERIC[ka] and NUMERIC[kb] then
        x, y = num(a), num(b)
    elseif ka == "str" and kb == "str" then
        x, y = a, b
    elseif (ka == "list" or ka == "tuple") and ka == kb then
        -- lexicographic: the first unequal pair decides, else the lengths
        for i = 1, math.min(#a, #b) do
            if not eq(a[i], b[i], depth + 1) then
                if op == "lteq" then op = "lt" elseif op == "gteq" then op = "gt" end
                return compare(op, a[i], b[i], depth + 1)
            end
        end
        x, y = #a, #b
    else
        raise("type", "'%s' not supported between instances of '%s' and '%s'",
            OP_SYMBOL[op], V.type_name(a), V.type_name(b))
    end
    if op == "lt" then return x < y
    elseif op == "lteq" then return x <= y
    elseif op == "gt" then return x > y end
    return x >= y
end
V.compare = compare

------------------------------------------------------------------ sequences

-- Python's slice.indices(len): start, stop, step for a 0-based walk.
local function slice_indices(len, start, stop, step)
    if step == nil then step = 1 end
    if step == 0 then raise("value", "slice step cannot be zero") end
    local lo_default, hi_default = 0, len
    if step < 0 then lo_default, hi_default = len - 1, -1 end
    local function adjust(v, default)
        if v == nil then return default end
        if v < 0 then
            v = v + len
            if v < 0 then v = step < 0 and -1 or 0 end
        elseif v >= len then
            v = step < 0 and len - 1 or len
        end
        return v
    end
    return adjust(start, lo_default), adjust(stop, hi_default), step
end

local function slice_bound(v)
    if v == nil or v == null then return nil end
    local n, is_float = num(v)
    if not n or is_float then
        raise("type", "slice indices must be integers or None or have an __index__ method")
    end
    return n
end

-- seq[start:stop:step] for a list, tuple or str.
function V.slice(seq, start, stop, step)
    if getmetatable(seq) == Markup then return V.markup(V.slice(seq.text, start, stop, step)) end
    start, stop, step = slice_bound(start), slice_bound(stop), slice_bound(step)
    local k = kind(seq)
    local items = k == "str" and utf8.chars(seq) or seq
    local i, j, st = slice_indices(#items, start, stop, step)
    local out = {}
    if st > 0 then
        while i < j do out[#out + 1] = items[i + 1]; i = i + st end
    else
        while i > j do out[#out + 1] = items[i + 1]; i = i + st end
    end
    if k == "str" then return concat(out) end
    if k == "tuple" then return V.tuple(out) end
    return V.list(out)
end

-- The items of an iterable as a Lua array: list/tuple items, dict keys,
-- str characters; undefined iterates as empty.
function V.iterate(v)
    local k = kind(v)
    if k == "list" or k == "tuple" or k == "view" then
        local out = {}
        for i = 1, #v do out[i] = v[i] end
        return out
    elseif k == "dict" then return json.keys(v)
    elseif k == "str" then return utf8.chars(v)
    elseif k == "markup" then return utf8.chars(v.text)
    elseif k == "iterator" then return drain(v)
    elseif k == "undefined" then return {}
    elseif k == "namespace" then raise("type", "'Namespace' object is not iterable")
    end
    raise("type", "'%s' object is not iterable", V.type_name(v))
end

function V.is_iterable(v)
    local k = kind(v)
    return k == "list" or k == "tuple" or k == "dict" or k == "str" or k == "undefined" or k == "view"
        or k == "iterator" or k == "markup"
end

-- len(v)
function V.length(v)
    local k = kind(v)
    if k == "str" then return utf8.len(v) end
    if k == "markup" then return utf8.len(v.text) end
    if k == "list" or k == "tuple" or k == "view" then return #v end
    if k == "dict" then return #json.keys(v) end
    if k == "undefined" then return 0 end
    raise("type", "object of type '%s' has no len()", V.type_name(v))
end

-- Dict keys: a boxed number keys the same slot as the plain number.
local function dict_key(k)
    k = unwrap(k)
    if type(k) == "table" then
        local n = json.tonumber(k)
        if n then return n end
        local kk = kind(k)
        if kk == "list" or kk == "dict" then raise("type", "unhashable type: '%s'", kk) end
    elseif k == true then return 1
    elseif k == false then return 0
    end
    return k
end
V.dict_key = dict_key

-- `item in container`
function V.contains(container, item)
    container, item = unwrap(container), unwrap(item)
    local k = kind(container)
    if k == "str" then
        if kind(item) ~= "str" then
            raise("type", "'in <string>' requires string as left operand, not %s", V.type_name(item))
        end
        return container:find(item, 1, true) ~= nil
    elseif k == "list" or k == "tuple" or k == "view" then
        for i = 1, #container do
            if eq(container[i], item) then return true end
        end
        return false
    elseif k == "dict" then
        local ik = kind(item)
        if ik == "undefined" then return false end
        return rawget(container, dict_key(item)) ~= nil
    elseif k == "iterator" then
        while true do
            local v = V.next_item(container)
            if v == nil then return false end
            if eq(v, item) then return true end
        end
    elseif k == "undefined" then
        return false
    end
    raise("type", "argument of type '%s' is not iterable", V.type_name(container))
end

------------------------------------------------------------------ arithmetic

local function operand_error(sym, a, b)
    check_defined(a)
    check_defined(b)
    raise("type", "unsupported operand type(s) for %s: '%s' and '%s'", sym, V.type_name(a), V.type_name(b))
end


local function repeat_seq(seq, n, limit)
    n = n > 0 and n or 0
    if kind(seq) == "str" then
        if #seq * n > limit then raise("limit", "string repetition exceeds the output limit") end
        return string.rep(seq, n)
    end
    if #seq * n > limit then raise("limit", "list repetition exceeds the output limit") end
    local out = {}
    for _ = 1, n do
        for i = 1, #seq do out[#out + 1] = seq[i] end
    end
    return kind(seq) == "tuple" and V.tuple(out) or V.list(out)
end

local function concat_seq(a, b, ctor)
    local out = {}
    for i = 1, #a do out[i] = a[i] end
    for i = 1, #b do out[#a + i] = b[i] end
    return ctor(out)
end

-- Markup's operators: a plain string operand of + is escaped first, and %
-- escapes its string arguments; the result stays Markup.
local function escaped_text(v, k)
    if k == "markup" then return v.text end
    if k == "str" then return V.html_escape(v) end
    return nil
end

local markup_arith

-- str % args lives in jinja/format.lua (required on use: it needs this module).
local function percent_format(fmt, args)
    return require("apr.jinja.format").percent(fmt, args)
end

-- Python's divmod for floats (Objects/floatobject.c): fmod is exact, and
-- the quotient is rounded so that div * y + mod == x; the signs follow the
-- divisor. Exact for integers below 2^53 as well.
local function py_divmod(x, y)
    local mod = math.fmod(x, y)
    local div = (x - mod) / y
    if mod ~= 0 then
        if (y < 0) ~= (mod < 0) then
            mod = mod + y
            div = div - 1
        end
    else
        mod = y < 0 and -0.0 or 0.0
    end
    local floordiv
    if div ~= 0 then
        floordiv = floor(div)
        if div - floordiv > 0.5 then floordiv = floordiv + 1 end
    else
        floordiv = (x / y < 0) and -0.0 or 0.0
    end
    return floordiv, mod
end

-- Binary arithmetic: op is add sub mul div floordiv mod pow. limit caps the
-- size of strings and lists built by + and *.
function V.arith(op, a, b, limit)
    limit = limit or huge
    local x, xf = num(a)
    local y, yf = num(b)
    if x and y then
        local f = xf or yf
        if op == "add" then return number_result(x + y, f)
        elseif op == "sub" then return number_result(x - y, f)
        elseif op == "mul" then return number_result(x * y, f)
        elseif op == "div" then
            if y == 0 then raise("zero_division", f and "float division by zero" or "division by zero") end
            return make_float(x / y)
        elseif op == "floordiv" or op == "mod" then
            if y == 0 then
                raise("zero_division", f and "float floor division by zero" or "integer division or modulo by zero")
            end
            local div, mod = py_divmod(x, y)
            if op == "floordiv" then return number_result(div, f) end
            if f then return make_float(mod) end
            return number_result(mod, false)
        elseif op == "pow" then
            if not f and y < 0 then
                if x == 0 then raise("zero_division", "0.0 cannot be raised to a negative power") end
                return make_float(x ^ y)
            end
            if f and x < 0 and y ~= floor(y) then
                raise("value", "negative number cannot be raised to a fractional power")
            end
            return number_result(x ^ y, f)
        end
    end
    local ka, kb = kind(a), kind(b)
    if ka == "markup" or kb == "markup" then return markup_arith(op, a, b, ka, kb, limit) end
    local sym = ({ add = "+", sub = "-", mul = "*", div = "/", floordiv = "//", mod = "%", pow = "** or pow()" })[op]
    if op == "add" then
        if ka == "str" and kb == "str" then
            if #a + #b > limit then raise("limit", "string concatenation exceeds the output limit") end
            return a .. b
        end
        if ka == "list" and kb == "list" then return concat_seq(a, b, V.list) end
        if ka == "tuple" and kb == "tuple" then return concat_seq(a, b, V.tuple) end
        if ka == "str" then
            check_defined(b)
            raise("type", 'can only concatenate str (not "%s") to str', V.type_name(b))
        end
        if ka == "list" and kb ~= "undefined" then
            raise("type", 'can only concatenate list (not "%s") to list', V.type_name(b))
        end
    elseif op == "mul" then
        local seq_a = ka == "str" or ka == "list" or ka == "tuple"
        local seq_b = kb == "str" or kb == "list" or kb == "tuple"
        if seq_a and (kb == "int" or kb == "bool") then return repeat_seq(a, num(b), limit) end
        if seq_b and (ka == "int" or ka == "bool") then return repeat_seq(b, num(a), limit) end
        if seq_a and seq_b then
            raise("type", "can't multiply sequence by non-int of type '%s'", V.type_name(b))
        end
    elseif op == "mod" and ka == "str" then
        return percent_format(a, b)
    end
    operand_error(sym, a, b)
end

function markup_arith(op, a, b, ka, kb, limit)
    if op == "add" then
        local x, y = escaped_text(a, ka), escaped_text(b, kb)
        if x and y then
            if #x + #y > limit then raise("limit", "string concatenation exceeds the output limit") end
            return V.markup(x .. y)
        end
        if ka == "markup" then
            check_defined(b)
            raise("type", 'can only concatenate str (not "%s") to str', V.type_name(b))
        end
        operand_error("+", a, b)
    elseif op == "mul" then
        local r = V.arith("mul", unwrap(a), unwrap(b), limit)
        return type(r) == "string" and V.markup(r) or r
    elseif op == "mod" and ka == "markup" then
        local args = b
        local function esc(x) if type(x) == "string" then return V.html_escape(x) end return x end
        if kind(b) == "tuple" then
            local t = {}
            for i = 1, #b do t[i] = esc(b[i]) end
            args = V.tuple(t)
        else
            args = esc(b)
        end
        return V.markup(percent_format(a.text, args))
    end
    return V.arith(op, unwrap(a), unwrap(b), limit)
end

-- Unary minus (sign -1) and plus (sign 1): numbers only.
local function unary(v, sign, symbol)
    local x, f = num(v)
    if not x then
        check_defined(v)
        raise("type", "bad operand type for unary %s: '%s'", symbol, V.type_name(v))
    end
    if f then return make_float(sign * x) end
    return number_result(sign * x, false)
end

function V.neg(v) return unary(v, -1, "-") end
function V.pos(v) return unary(v, 1, "+") end

return V
