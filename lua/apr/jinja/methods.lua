-- jinja/methods.lua — the Python methods templates call on values:
-- message.content.strip(), tool.get('x'), d.items(), s.split(',')...
--
-- Strings follow Python's str (indices in code points, Python whitespace).
-- jinja2's ImmutableSandboxedEnvironment lets templates read but never
-- modify lists and dicts, so their mutating methods are reported as unsafe
-- rather than provided.
local V = require "apr.jinja.value"
local json = require "apr.json"
local utf8 = require "apr.text.utf8"

local M = {}

local raise = V.raise
local sub, find, concat = string.sub, string.find, table.concat

-- Positional argument i or keyword name, else default.
local function arg(args, kwargs, i, name, default)
    local v = args[i]
    if v == nil and kwargs and name then v = kwargs[name] end
    if v == nil then return default end
    return v
end

local function want_str(v, what)
    if type(v) ~= "string" then
        V.check_defined(v)
        raise("type", "%s must be str, not %s", what, V.type_name(v))
    end
    return v
end

-- Optional chars argument of strip: None or str.
local function strip_chars(v, name)
    if v == nil or v == V.null then return nil end
    if type(v) ~= "string" then
        V.check_defined(v)
        raise("type", "%s arg must be None or str", name)
    end
    return v
end

-- s[start:end] in code points, for the optional start/end arguments.
local function window(s, args, first)
    local start, stop = args[first], args[first + 1]
    if start == nil and stop == nil then return s, 0 end
    local cs = utf8.chars(s)
    local n = #cs
    local function clamp(v, default)
        if v == nil or v == V.null then return default end
        v = V.index(v)
        if v < 0 then v = v + n end
        if v < 0 then v = 0 end
        if v > n then v = n end
        return v
    end
    local a, b = clamp(start, 0), clamp(stop, n)
    if a >= b then return "", a end
    return concat(cs, "", a + 1, b), a
end

-- Code point index of byte offset i in s.
local function cp_index(s, i)
    if utf8.ascii(s) then return i - 1 end
    return utf8.len(sub(s, 1, i - 1))
end

local function split_sep(s, sep, maxsplit)
    if sep == "" then raise("value", "empty separator") end
    local out, i, count = {}, 1, 0
    while maxsplit < 0 or count < maxsplit do
        local j = find(s, sep, i, true)
        if not j then break end
        out[#out + 1] = sub(s, i, j - 1)
        i = j + #sep
        count = count + 1
    end
    out[#out + 1] = sub(s, i)
    return out
end

local function rsplit_sep(s, sep, maxsplit)
    if sep == "" then raise("value", "empty separator") end
    local out, stop, count = {}, #s, 0
    while maxsplit < 0 or count < maxsplit do
        -- the last occurrence of sep ending at or before stop
        local j, last = 1, nil
        while true do
            local k = find(s, sep, j, true)
            if not k or k + #sep - 1 > stop then break end
            last = k
            j = k + 1
        end
        if not last then break end
        table.insert(out, 1, sub(s, last + #sep, stop))
        stop = last - 1
        count = count + 1
    end
    table.insert(out, 1, sub(s, 1, stop))
    return out
end

local function rsplit_whitespace(s, maxsplit)
    if maxsplit < 0 then return utf8.split_whitespace(s, -1) end
    local cs = utf8.chars(s)
    local out, j, count = {}, #cs, 0
    local function space(k) return utf8.space_char(cs[k]) end
    while count < maxsplit do
        while j >= 1 and space(j) do j = j - 1 end
        if j < 1 then break end
        local e = j
        while j >= 1 and not space(j) do j = j - 1 end
        table.insert(out, 1, concat(cs, "", j + 1, e))
        count = count + 1
    end
    while j >= 1 and space(j) do j = j - 1 end
    if j >= 1 then table.insert(out, 1, concat(cs, "", 1, j)) end
    return out
end

-- Python's str.splitlines line boundaries.
local LINE_BREAKS = {
    ["\n"] = true, ["\r"] = true, ["\v"] = true, ["\f"] = true, ["\28"] = true,
    ["\29"] = true, ["\30"] = true, ["\194\133"] = true, ["\226\128\168"] = true,
    ["\226\128\169"] = true,
}

function M.splitlines(s, keepends)
    local cs = utf8.chars(s)
    local out, cur = {}, {}
    local i = 1
    while i <= #cs do
        local ch = cs[i]
        if LINE_BREAKS[ch] then
            local brk = ch
            if ch == "\r" and cs[i + 1] == "\n" then brk = "\r\n"; i = i + 1 end
            if keepends then cur[#cur + 1] = brk end
            out[#out + 1] = concat(cur)
            cur = {}
        else
            cur[#cur + 1] = ch
        end
        i = i + 1
    end
    if #cur > 0 then out[#out + 1] = concat(cur) end
    return out
end

local function replace(s, old, new, count)
    if count == 0 then return s end
    if old == "" then
        local cs = utf8.chars(s)
        local out, n = {}, 0
        for i = 1, #cs + 1 do
            if count < 0 or n < count then out[#out + 1] = new; n = n + 1 end
            out[#out + 1] = cs[i]
        end
        return concat(out)
    end
    local out, i, n = {}, 1, 0
    while count < 0 or n < count do
        local j = find(s, old, i, true)
        if not j then break end
        out[#out + 1] = sub(s, i, j - 1)
        out[#out + 1] = new
        i = j + #old
        n = n + 1
    end
    out[#out + 1] = sub(s, i)
    return concat(out)
end
M.replace = replace

-- Python's str.capitalize: first character upper, the rest lower.
function M.capitalize(s)
    if s == "" then return s end
    local cs = utf8.chars(s)
    return utf8.upper(cs[1]) .. utf8.lower(concat(cs, "", 2))
end

local function cased(ch)
    local cp, len = utf8.decode(ch, 1)
    if len == 1 and cp >= 0x80 then return false end
    return utf8.is_upper(cp) or utf8.is_lower(cp)
end

-- Python's str.title: upper after an uncased character, lower after a cased one.
function M.title(s)
    local out, prev_cased = {}, false
    for i, ch in ipairs(utf8.chars(s)) do
        out[i] = prev_cased and utf8.lower(ch) or utf8.upper(ch)
        prev_cased = cased(ch)
    end
    return concat(out)
end

local function pad(s, width, fill, how)
    local n = utf8.len(s)
    if width <= n then return s end
    local total = width - n
    if how == "left" then return s .. string.rep(fill, total) end
    if how == "right" then return string.rep(fill, total) .. s end
    -- Python's center puts the extra character on the left when the
    -- string's length and the total are both odd.
    local left = math.floor(total / 2) + ((total % 2 == 1 and width % 2 == 1) and 1 or 0)
    return string.rep(fill, left) .. s .. string.rep(fill, total - left)
end
M.pad = pad

local function fill_char(v)
    if v == nil then return " " end
    if type(v) ~= "string" or utf8.len(v) ~= 1 then
        raise("type", "The fill character must be exactly one character long")
    end
    return v
end

------------------------------------------------------------------ the tables

local STR = {}

STR.strip = function(s, a, k) return utf8.strip(s, strip_chars(arg(a, k, 1, "chars"), "strip"), "both") end
STR.lstrip = function(s, a, k) return utf8.strip(s, strip_chars(arg(a, k, 1, "chars"), "lstrip"), "left") end
STR.rstrip = function(s, a, k) return utf8.strip(s, strip_chars(arg(a, k, 1, "chars"), "rstrip"), "right") end
STR.upper = function(s) return utf8.upper(s) end
STR.lower = function(s) return utf8.lower(s) end
STR.casefold = function(s) return utf8.lower(s) end
STR.capitalize = function(s) return M.capitalize(s) end
STR.title = function(s) return M.title(s) end
STR.swapcase = function(s)
    local out = {}
    for i, ch in ipairs(utf8.chars(s)) do
        local up = utf8.upper(ch)
        out[i] = up ~= ch and up or utf8.lower(ch)
    end
    return concat(out)
end

local function split_args(a, k)
    local sep = arg(a, k, 1, "sep")
    local maxsplit = V.index(arg(a, k, 2, "maxsplit", -1))
    if sep == V.null then sep = nil end
    if sep ~= nil then want_str(sep, "sep") end
    return sep, maxsplit
end

STR.split = function(s, a, k)
    local sep, maxsplit = split_args(a, k)
    if sep == nil then return V.list(utf8.split_whitespace(s, maxsplit)) end
    return V.list(split_sep(s, sep, maxsplit))
end
STR.rsplit = function(s, a, k)
    local sep, maxsplit = split_args(a, k)
    if sep == nil then return V.list(rsplit_whitespace(s, maxsplit)) end
    return V.list(rsplit_sep(s, sep, maxsplit))
end
STR.splitlines = function(s, a, k) return V.list(M.splitlines(s, V.truth(arg(a, k, 1, "keepends", false)))) end

local function affix_test(name, test)
    return function(s, a)
        local affix = a[1]
        local text = window(s, a, 2)
        local kind = V.kind(affix)
        if kind == "str" then return test(text, affix) end
        if kind == "tuple" then
            for i = 1, #affix do
                if test(text, want_str(affix[i], "tuple item")) then return true end
            end
            return false
        end
        V.check_defined(affix)
        raise("type", "%s first arg must be str or a tuple of str, not %s", name, V.type_name(affix))
    end
end
STR.startswith = affix_test("startswith", function(s, p) return sub(s, 1, #p) == p end)
STR.endswith = affix_test("endswith", function(s, p) return p == "" or sub(s, -#p) == p end)

STR.replace = function(s, a, k)
    local old = want_str(arg(a, k, 1, "old"), "replace() argument 1")
    local new = want_str(arg(a, k, 2, "new"), "replace() argument 2")
    return replace(s, old, new, V.index(arg(a, k, 3, "count", -1)))
end

local function finder(reverse, strict)
    return function(s, a)
        local needle = want_str(a[1], "substring")
        local text, offset = window(s, a, 2)
        local j
        if reverse then
            local from = 1
            while true do
                local k = find(text, needle, from, true)
                if not k or k > #text then break end
                j = k
                from = k + 1
                if needle == "" and k > #text then break end
            end
            if needle == "" then j = #text + 1 end
        else
            j = find(text, needle, 1, true)
        end
        if not j then
            if strict then raise("value", "substring not found") end
            return -1
        end
        return offset + cp_index(text, j)
    end
end
STR.find, STR.rfind = finder(false, false), finder(true, false)
STR.index, STR.rindex = finder(false, true), finder(true, true)

STR.count = function(s, a)
    local needle = want_str(a[1], "substring")
    local text = window(s, a, 2)
    if needle == "" then return utf8.len(text) + 1 end
    local n, i = 0, 1
    while true do
        local j = find(text, needle, i, true)
        if not j then return n end
        n, i = n + 1, j + #needle
    end
end

STR.join = function(s, a)
    local items = V.iterate(a[1])
    for i, item in ipairs(items) do
        if type(item) ~= "string" then
            raise("type", "sequence item %d: expected str instance, %s found", i - 1, V.type_name(item))
        end
    end
    return concat(items, s)
end

STR.center = function(s, a) return pad(s, V.index(a[1]), fill_char(a[2]), "center") end
STR.ljust = function(s, a) return pad(s, V.index(a[1]), fill_char(a[2]), "left") end
STR.rjust = function(s, a) return pad(s, V.index(a[1]), fill_char(a[2]), "right") end
STR.zfill = function(s, a)
    local width = V.index(a[1])
    local sign, rest = s:match("^([-+]?)(.*)$")
    return sign .. pad(rest, width - #sign, "0", "right")
end

STR.partition = function(s, a)
    local sep = want_str(a[1], "sep")
    if sep == "" then raise("value", "empty separator") end
    local j = find(s, sep, 1, true)
    if not j then return V.tuple({ s, "", "" }) end
    return V.tuple({ sub(s, 1, j - 1), sep, sub(s, j + #sep) })
end
STR.rpartition = function(s, a)
    local sep = want_str(a[1], "sep")
    if sep == "" then raise("value", "empty separator") end
    local parts = rsplit_sep(s, sep, 1)
    if #parts == 1 then return V.tuple({ "", "", s }) end
    return V.tuple({ parts[1], sep, parts[2] })
end
STR.removeprefix = function(s, a)
    local p = want_str(a[1], "prefix")
    if p ~= "" and sub(s, 1, #p) == p then return sub(s, #p + 1) end
    return s
end
STR.removesuffix = function(s, a)
    local p = want_str(a[1], "suffix")
    if p ~= "" and sub(s, -#p) == p then return sub(s, 1, #s - #p) end
    return s
end

local function all_chars(pred)
    return function(s)
        if s == "" then return false end
        for _, ch in ipairs(utf8.chars(s)) do
            if not pred(ch) then return false end
        end
        return true
    end
end
local function is_alpha(ch)
    if #ch == 1 then return ch:match("^%a$") ~= nil end
    return cased(ch) or (utf8.decode(ch, 1) >= 0x3040 and not utf8.space_char(ch))
end
local function is_digit(ch) return #ch == 1 and ch:match("^%d$") ~= nil end
STR.isalpha = all_chars(is_alpha)
STR.isdigit = all_chars(is_digit)
STR.isdecimal = STR.isdigit
STR.isnumeric = STR.isdigit
STR.isalnum = all_chars(function(ch) return is_alpha(ch) or is_digit(ch) end)
STR.isspace = all_chars(utf8.space_char)
STR.isascii = function(s) return utf8.ascii(s) end
STR.isidentifier = function(s) return s:match("^[%a_\128-\255][%w_\128-\255]*$") ~= nil end
local function cased_kind(ch)
    local cp, len = utf8.decode(ch, 1)
    if len == 1 and cp >= 0x80 then return nil end
    if utf8.is_upper(cp) then return "upper" end
    if utf8.is_lower(cp) then return "lower" end
    return nil
end
-- isupper/islower: every cased character has the case, and there is one.
local function case_test(want)
    return function(s)
        local any = false
        for _, ch in ipairs(utf8.chars(s)) do
            local c = cased_kind(ch)
            if c and c ~= want then return false end
            if c then any = true end
        end
        return any
    end
end
STR.isupper = case_test("upper")
STR.islower = case_test("lower")
-- istitle: uppercase only after uncased characters, lowercase only after cased ones.
STR.istitle = function(s)
    local prev_cased, any = false, false
    for _, ch in ipairs(utf8.chars(s)) do
        local c = cased_kind(ch)
        if c == "upper" then
            if prev_cased then return false end
            prev_cased, any = true, true
        elseif c == "lower" then
            if not prev_cased then return false end
            prev_cased = true
        else
            prev_cased = false
        end
    end
    return any
end

-- str.format needs the sandbox's attribute lookup; the runtime installs it.
STR.format = function(s, a, k, rt)
    return require("apr.jinja.format").format(s, a, k, rt.getattr_fn, rt.getitem_fn)
end

-- Names str has in Python but this module leaves out: calling one says so.
local STR_MISSING = {
    encode = true, expandtabs = true, format_map = true, isprintable = true,
    maketrans = true, translate = true,
}

local LIST = {}
LIST.count = function(l, a)
    local n = 0
    for i = 1, #l do if V.eq(l[i], a[1]) then n = n + 1 end end
    return n
end
LIST.index = function(l, a)
    for i = 1, #l do if V.eq(l[i], a[1]) then return i - 1 end end
    raise("value", "%s is not in list", V.repr(a[1]))
end
LIST.copy = function(l)
    local out = {}
    for i = 1, #l do out[i] = l[i] end
    return V.list(out)
end
local LIST_UNSAFE = {
    append = true, clear = true, extend = true, insert = true, pop = true,
    remove = true, reverse = true, sort = true,
}
local TUPLE = { count = LIST.count, index = LIST.index }

local DICT = {}
DICT.get = function(d, a, k)
    local key = arg(a, k, 1, "key")
    if key == nil then raise("type", "get expected at least 1 argument, got 0") end
    local v = rawget(d, V.dict_key(key))
    if v == nil then return arg(a, k, 2, "default", V.null) end
    return v
end
DICT.keys = function(d) return V.view("dict_keys", json.keys(d)) end
DICT.values = function(d)
    local out = {}
    for i, key in ipairs(json.keys(d)) do out[i] = d[key] end
    return V.view("dict_values", out)
end
DICT.items = function(d)
    local out = {}
    for i, key in ipairs(json.keys(d)) do out[i] = V.tuple({ key, d[key] }) end
    return V.view("dict_items", out)
end
DICT.copy = function(d)
    local out = json.object()
    for _, key in ipairs(json.keys(d)) do out[key] = d[key] end
    return out
end
local DICT_UNSAFE = {
    clear = true, pop = true, popitem = true, setdefault = true, update = true,
}

M.STR = STR

local TABLES = { str = STR, list = LIST, tuple = TUPLE, dict = DICT }
local UNSAFE = { list = LIST_UNSAFE, dict = DICT_UNSAFE }

-- The method `name` of obj (whose V.kind is kind): a bound builtin, or
-- false plus "unsafe" for methods the sandbox refuses, or nil when obj has
-- no such attribute.
function M.lookup(obj, kind, name)
    local t = TABLES[kind]
    if not t then return nil end
    local f = t[name]
    if f then
        return V.builtin(kind .. "." .. name, function(args, kwargs, rt) return f(obj, args, kwargs, rt) end)
    end
    if UNSAFE[kind] and UNSAFE[kind][name] then return false, "unsafe" end
    if kind == "str" and STR_MISSING[name] then
        return V.builtin("str." .. name, function()
            raise("type", "str.%s() is not supported by apr's Jinja interpreter", name)
        end)
    end
    return nil
end

return M
