-- jinja/format.lua — Python's two string formatting languages, as
-- templates use them: `"%s: %d" % (a, b)` (and the format filter), and
-- `"{} {name:>5}".format(...)`.
local V = require "apr.jinja.value"
local json = require "apr.json"
local utf8 = require "apr.text.utf8"
local methods = require "apr.jinja.methods"

local M = {}

local raise = V.raise
local kind = V.kind
local num = V.num
local check_defined = V.check_defined
local to_str, to_repr = V.str, V.repr
local format, concat, sub, byte, find, floor = string.format, table.concat, string.sub, string.byte, string.find, math.floor

local pad = methods.pad

------------------------------------------------------------------ str % args

-- fmt % args, Python's printf-style formatting: %s %r %a %c %d %i %u %o
-- %x %X %e %E %f %F %g %G %%, with flags, width, precision and %(key)s.
function M.percent(fmt, args)
    -- As CPython's str %: a tuple is the argument list; anything else is one
    -- argument, and a subscriptable one (dict, list, Undefined) may also
    -- serve %(key)s lookups and excuses unused arguments.
    local list, mapping
    local ka = kind(args)
    if ka == "tuple" then list = args
    elseif ka == "dict" or ka == "list" or ka == "undefined" then mapping = args; list = { args }
    else list = { args } end
    local used = 0
    local function next_arg()
        used = used + 1
        if used > #list then raise("type", "not enough arguments for format string") end
        return list[used]
    end
    local out = {}
    local i = 1
    while i <= #fmt do
        local j = fmt:find("%", i, true)
        if not j then out[#out + 1] = sub(fmt, i); break end
        out[#out + 1] = sub(fmt, i, j - 1)
        local p = j + 1
        local key
        if sub(fmt, p, p) == "(" then
            local close = fmt:find(")", p, true)
            if not close then raise("value", "incomplete format key") end
            key = sub(fmt, p + 1, close - 1)
            p = close + 1
        end
        local flags = fmt:match("^[-+ #0]*", p)
        p = p + #flags
        local width = fmt:match("^%*", p) or fmt:match("^%d*", p)
        p = p + #width
        local prec = ""
        if sub(fmt, p, p) == "." then
            prec = "." .. (fmt:match("^%*", p + 1) or fmt:match("^%d*", p + 1))
            p = p + #prec
        end
        p = p + #fmt:match("^[hlL]*", p)
        local conv = sub(fmt, p, p)
        if conv == "" then raise("value", "incomplete format") end
        i = p + 1
        if conv == "%" then
            out[#out + 1] = "%"
        else
            if width == "*" then width = tostring(num(next_arg())) end
            if prec == ".*" then prec = "." .. tostring(num(next_arg())) end
            local arg
            if key then
                if not mapping then raise("type", "format requires a mapping") end
                check_defined(mapping)
                if kind(mapping) ~= "dict" then raise("type", "list indices must be integers or slices, not str") end
                arg = rawget(mapping, key)
                if arg == nil then raise("key", "'%s'", key) end
            else
                arg = next_arg()
            end
            local text
            if conv == "s" or conv == "r" or conv == "a" then
                text = conv == "s" and to_str(arg) or to_repr(arg)
                if #prec > 1 then text = concat(utf8.chars(text), "", 1, math.min(tonumber(sub(prec, 2)), utf8.len(text))) end
            elseif conv == "c" then
                text = type(arg) == "string" and arg or utf8.encode(num(arg) or 0)
            elseif conv:match("^[diouxXeEfFgG]$") then
                local n = num(arg)
                if not n then
                    check_defined(arg)
                    raise("type", "%%%s format: a real number is required, not %s", conv, V.type_name(arg))
                end
                local f = flags:gsub("[-0]", "")
                if conv == "d" or conv == "i" or conv == "u" then
                    text = format("%" .. f:gsub("#", "") .. ".0f", n >= 0 and floor(n) or -floor(-n))
                elseif conv:match("[xXo]") then
                    text = format("%" .. f .. conv, floor(n))
                else
                    text = format("%" .. f .. (prec ~= "" and prec or ".6") .. conv, n)
                end
                local w = tonumber(width) or 0
                if flags:find("0", 1, true) and not flags:find("-", 1, true) and #text < w then
                    local sign, digits = text:match("^([-+ ]?)(.*)$")
                    text = sign .. string.rep("0", w - #text) .. digits
                end
            else
                raise("value", "unsupported format character '%s' (0x%x) at index %d", conv, byte(conv), p - 1)
            end
            local w = tonumber(width) or 0
            local len = utf8.len(text)
            if len < w then
                if flags:find("-", 1, true) then text = text .. string.rep(" ", w - len)
                else text = string.rep(" ", w - len) .. text end
            end
            out[#out + 1] = text
        end
    end
    if used < #list and not mapping then
        raise("type", "not all arguments converted during string formatting")
    end
    return concat(out)
end

------------------------------------------------------------------ str.format

-- Applies a format spec ([[fill]align][sign][0][width][,][.prec][type]).
local function format_spec(v, spec)
    if spec == "" then return V.str(v) end
    local fill, align, rest = spec:match("^(.?)([<>=^])(.*)$")
    if not align then fill, align, rest = "", nil, spec end
    local sign, zero, width, comma, prec, typ = rest:match("^([-+ ]?)(0?)(%d*)(,?)%.?(%d*)([%a%%]?)$")
    if not sign then raise("value", "Invalid format specifier '%s'", spec) end
    if fill == "" then fill = zero == "0" and "0" or " " end
    local text
    local n, is_float = V.num(v)
    if typ == "" and type(v) == "string" then typ = "s" end
    if typ == "s" then
        text = V.str(v)
        if prec ~= "" then text = table.concat(utf8.chars(text), "", 1, math.min(tonumber(prec), utf8.len(text))) end
        align = align or "<"
    elseif n then
        if typ == "" then
            if prec ~= "" then typ = "g" elseif is_float then text = json.float_repr(n) else text = json.int_repr(n) end
        end
        if not text then
            if typ == "d" then text = string.format("%d", n)
            elseif typ == "%" then text = string.format("%." .. (prec ~= "" and prec or "6") .. "f%%", n * 100)
            elseif typ:match("^[eEfFgGxXob]$") then
                if typ == "b" then
                    local bits, x = {}, math.floor(math.abs(n))
                    repeat bits[#bits + 1] = tostring(x % 2); x = math.floor(x / 2) until x == 0
                    text = (n < 0 and "-" or "") .. string.reverse(concat(bits))
                elseif typ:match("[xXo]") then text = string.format("%" .. typ, n)
                else text = string.format("%." .. (prec ~= "" and prec or "6") .. typ, n) end
            else
                raise("value", "Unknown format code '%s' for number", typ)
            end
        end
        if comma == "," then
            local int, rest2 = text:match("^(-?%d+)(.*)$")
            if int then
                int = int:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^(-?),", "%1")
                text = int .. rest2
            end
        end
        if sign == "+" and n >= 0 then text = "+" .. text elseif sign == " " and n >= 0 then text = " " .. text end
        align = align or ">"
    else
        raise("value", "Unknown format code '%s' for object of type '%s'", typ, V.type_name(v))
    end
    local w = tonumber(width) or 0
    if align == "=" then
        local s, digits = text:match("^([-+ ]?)(.*)$")
        return s .. pad(digits, w - #s, fill, "right")
    end
    return pad(text, w, fill, align == "<" and "left" or align == ">" and "right" or "center")
end

-- Python's str.format for {}, {0}, {name}, {name.attr}, {0[key]}, !r/!s
-- conversions and format specs; getattr is the sandbox's attribute lookup.
function M.format(fmt, args, kwargs, getattr, getitem)
    local auto = 0
    local out = {}
    local i = 1
    while i <= #fmt do
        local c = sub(fmt, i, i)
        if c == "{" and sub(fmt, i + 1, i + 1) == "{" then
            out[#out + 1] = "{"; i = i + 2
        elseif c == "}" and sub(fmt, i + 1, i + 1) == "}" then
            out[#out + 1] = "}"; i = i + 2
        elseif c == "}" then
            raise("value", "Single '}' encountered in format string")
        elseif c == "{" then
            local close = find(fmt, "}", i, true)
            if not close then raise("value", "Single '{' encountered in format string") end
            local field = sub(fmt, i + 1, close - 1)
            local name, conv, spec = field:match("^([^!:]*)!?([rsa]?):?(.*)$")
            local head, tail = name:match("^([^.%[]*)(.*)$")
            local v
            if head == "" then
                v = args[auto + 1]
                auto = auto + 1
                if v == nil then raise("index", "Replacement index %d out of range for positional args tuple", auto - 1) end
            elseif head:match("^%d+$") then
                v = args[tonumber(head) + 1]
                if v == nil then raise("index", "Replacement index %s out of range for positional args tuple", head) end
            else
                v = kwargs and kwargs[head]
                if v == nil then raise("key", "'%s'", head) end
            end
            while tail ~= "" do
                local attr, rest = tail:match("^%.([%w_]+)(.*)$")
                if attr then
                    v = getattr(v, attr)
                else
                    local key
                    key, rest = tail:match("^%[([^%]]+)%](.*)$")
                    if not key then raise("value", "Invalid format field '%s'", name) end
                    v = getitem(v, tonumber(key) or key)
                end
                tail = rest
            end
            if conv == "r" or conv == "a" then v = V.repr(v) elseif conv == "s" then v = V.str(v) end
            out[#out + 1] = format_spec(v, spec)
            i = close + 1
        else
            local j = find(fmt, "[{}]", i)
            out[#out + 1] = sub(fmt, i, (j or #fmt + 1) - 1)
            i = j or #fmt + 1
        end
    end
    return concat(out)
end

return M
