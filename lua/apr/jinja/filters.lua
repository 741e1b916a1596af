-- jinja/filters.lua — jinja2's built-in filters (jinja2/filters.py), plus
-- Hugging Face's tojson: json.dumps(x, ensure_ascii=False, indent=..,
-- separators=.., sort_keys=..), key order kept (jinja2's own tojson would
-- escape <, >, & and ').
--
-- Each filter is fn(value, args, kwargs, rt): args a Lua array, kwargs an
-- ordered json.object or nil, rt the running render (attribute access,
-- tests, limits).
local V = require "apr.jinja.value"
local json = require "apr.json"
local utf8 = require "apr.text.utf8"
local methods = require "apr.jinja.methods"
local format = require "apr.jinja.format"

local F = {}

local raise = V.raise
local kind = V.kind
local null = V.null
local concat = table.concat

-- Binds a filter's arguments to its parameters ({ "name", default } pairs,
-- after the value), as Python would: positional, then by keyword.
local function bind(fname, params, args, kwargs)
    local out = {}
    if #args > #params then
        raise("type", "%s() takes at most %d positional arguments (%d given)", fname, #params + 1, #args + 1)
    end
    for i, p in ipairs(params) do
        local v = args[i]
        if kwargs and kwargs[p[1]] ~= nil then
            if v ~= nil then raise("type", "%s() got multiple values for argument '%s'", fname, p[1]) end
            v = kwargs[p[1]]
        end
        if v == nil then v = p[2] end
        out[p[1]] = v
    end
    if kwargs then
        for _, k in ipairs(json.keys(kwargs)) do
            local known = false
            for _, p in ipairs(params) do if p[1] == k then known = true end end
            if not known then raise("type", "%s() got an unexpected keyword argument '%s'", fname, k) end
        end
    end
    return out
end

-- jinja2's soft_str: str() that leaves strings alone.
local to_str = V.str

local function lower_if_str(v)
    if type(v) == "string" then return utf8.lower(v) end
    return v
end

-- "a.b.0" -> { "a", "b", 0 }, as _prepare_attribute_parts splits it.
local function attribute_parts(attr)
    if attr == nil or attr == null then return {} end
    if type(attr) == "string" then
        local parts = {}
        for part in (attr .. "."):gmatch("(.-)%.") do
            parts[#parts + 1] = part:match("^%d+$") and tonumber(part) or part
        end
        return parts
    end
    return { attr }
end

-- A getter for item.attribute (dotted path), with an optional default for
-- undefined results and an optional postprocess.
local function attrgetter(rt, attribute, postprocess, default)
    local parts = attribute_parts(attribute)
    return function(item)
        for _, part in ipairs(parts) do
            item = rt:getitem(item, part)
            if default ~= nil and default ~= null and getmetatable(item) == V.Undefined then item = default end
        end
        if postprocess then item = postprocess(item) end
        return item
    end
end

-- Python's sorted(): stable, with a key; comparisons may raise TypeError.
local function sorted(items, key, reverse)
    local decorated = {}
    for i, item in ipairs(items) do decorated[i] = { key = key(item), item = item, i = i } end
    table.sort(decorated, function(a, b)
        local lt
        if reverse then lt = V.compare("lt", b.key, a.key) else lt = V.compare("lt", a.key, b.key) end
        if lt then return true end
        local gt
        if reverse then gt = V.compare("lt", a.key, b.key) else gt = V.compare("lt", b.key, a.key) end
        if gt then return false end
        return a.i < b.i
    end)
    local out = {}
    for i, d in ipairs(decorated) do out[i] = d.item end
    return out
end

------------------------------------------------------------------ strings

F.trim = function(v, a, k)
    local p = bind("trim", { { "chars" } }, a, k)
    local chars = p.chars
    if chars == null then chars = nil end
    return utf8.strip(to_str(v), chars, "both")
end
F.upper = function(v) return utf8.upper(to_str(v)) end
F.lower = function(v) return utf8.lower(to_str(v)) end
F.capitalize = function(v) return methods.capitalize(to_str(v)) end
F.title = function(v)
    -- jinja2's title: split before runs of -, whitespace and ({[<, then
    -- upper-case each piece's first character and lower-case the rest.
    local s = to_str(v)
    local out = {}
    local cs = utf8.chars(s)
    local i = 1
    local function sep(ch) return ch and (ch:match("^[-({%[<]$") or utf8.space_char(ch)) end
    while i <= #cs do
        local j = i
        if sep(cs[i]) then
            while j <= #cs and sep(cs[j]) do j = j + 1 end
        else
            while j <= #cs and not sep(cs[j]) do j = j + 1 end
        end
        out[#out + 1] = utf8.upper(cs[i]) .. utf8.lower(concat(cs, "", i + 1, j - 1))
        i = j
    end
    return concat(out)
end
F.replace = function(v, a, k)
    local p = bind("replace", { { "old" }, { "new" }, { "count", null } }, a, k)
    local count = p.count == null and -1 or V.to_int(p.count) or -1
    return methods.replace(to_str(v), to_str(p.old), to_str(p.new), count)
end
F.string = function(v) return to_str(v) end
F.safe = function(v)
    if getmetatable(v) == V.Markup then return v end
    return V.markup(to_str(v))
end
F.center = function(v, a, k)
    local p = bind("center", { { "width", 80 } }, a, k)
    return methods.pad(to_str(v), V.to_int(p.width) or 80, " ", "center")
end
F.indent = function(v, a, k)
    local p = bind("indent", { { "width", 4 }, { "first", false }, { "blank", false } }, a, k)
    local indention = type(p.width) == "string" and p.width or string.rep(" ", V.to_int(p.width) or 0)
    local s = to_str(v) .. "\n"
    local lines = methods.splitlines(s)
    local rv
    if V.truth(p.blank) then
        rv = concat(lines, "\n" .. indention)
    else
        rv = lines[1] or ""
        if #lines > 1 then
            local rest = {}
            for i = 2, #lines do
                rest[#rest + 1] = lines[i] ~= "" and indention .. lines[i] or lines[i]
            end
            rv = rv .. "\n" .. concat(rest, "\n")
        end
    end
    if V.truth(p.first) then rv = indention .. rv end
    return rv
end
F.truncate = function(v, a, k)
    local p = bind("truncate", { { "length", 255 }, { "killwords", false }, { "end", "..." }, { "leeway", 5 } }, a, k)
    local s = to_str(v)
    local length, e, leeway = V.to_int(p.length), to_str(p["end"]), V.to_int(p.leeway)
    if length < utf8.len(e) then raise("assertion", "expected length >= %d, got %d", utf8.len(e), length) end
    if utf8.len(s) <= length + leeway then return s end
    local head = V.slice(s, 0, length - utf8.len(e))
    if V.truth(p.killwords) then return head .. e end
    -- rsplit(" ", 1)[0]: drop the last partial word
    return (head:match("^(.*) ") or head) .. e
end
-- Is the character matched by Python's \w? Letters and digits of any
-- script and "_"; approximated outside ASCII by excluding the punctuation,
-- symbol, mark and space blocks.
local NON_WORD = {
    { 0x80, 0xA9 }, { 0xAB, 0xB1 }, { 0xB4, 0xB4 }, { 0xB6, 0xB8 }, { 0xBB, 0xBB }, { 0xBF, 0xBF },
    { 0xD7, 0xD7 }, { 0xF7, 0xF7 }, { 0x300, 0x36F }, { 0x2000, 0x2BFF }, { 0x3000, 0x3004 },
    { 0x3008, 0x3020 }, { 0x302A, 0x3030 }, { 0xFE00, 0xFE0F }, { 0xFE30, 0xFE4F },
    { 0xFF00, 0xFF0F }, { 0xFF1A, 0xFF20 }, { 0xFF3B, 0xFF40 }, { 0xFF5B, 0xFF65 },
    { 0x1F000, 0x1FAFF }, { 0xE0000, 0xE007F },
}
local function word_char(ch)
    if #ch == 1 then return ch:match("^[%w_]$") ~= nil end
    local cp = utf8.decode(ch, 1)
    if utf8.space_char(ch) then return false end
    for _, r in ipairs(NON_WORD) do
        if cp >= r[1] and cp <= r[2] then return false end
    end
    return true
end
F.wordcount = function(v)
    local n, in_word = 0, false
    for _, ch in ipairs(utf8.chars(to_str(v))) do
        local w = word_char(ch)
        if w and not in_word then n = n + 1 end
        in_word = w
    end
    return n
end
F.format = function(v, a, k)
    if #a > 0 and k and next(k) then
        raise("filter_argument", "can't handle positional and keyword arguments at the same time")
    end
    if k and next(k) then return format.percent(to_str(v), k) end
    return format.percent(to_str(v), V.tuple(a))
end
-- markupsafe.escape: Markup passes unchanged, anything else is escaped.
F.escape = function(v)
    if getmetatable(v) == V.Markup then return v end
    return V.markup(V.html_escape(to_str(v)))
end
F.e = F.escape
F.forceescape = function(v) return V.markup(V.html_escape(to_str(v))) end

------------------------------------------------------------------ numbers

F.int = function(v, a, k)
    local p = bind("int", { { "default", 0 }, { "base", 10 } }, a, k)
    if getmetatable(v) == V.Undefined then V.fail_undefined(v) end
    local base = V.to_int(p.base) or 10
    local n = V.to_int(v, type(v) == "string" and base or nil)
    if n == nil and type(v) == "string" then
        local f = V.to_float(v)
        if f and f == f and f ~= math.huge and f ~= -math.huge then n = f >= 0 and math.floor(f) or -math.floor(-f) end
    end
    if n == nil then return p.default end
    if type(n) == "number" then return V.int_result(n) end
    return n
end
F.float = function(v, a, k)
    local p = bind("float", { { "default", V.make_float(0) } }, a, k)
    if getmetatable(v) == V.Undefined then V.fail_undefined(v) end
    local f = V.to_float(v)
    if f == nil then return p.default end
    return V.make_float(f)
end
F.abs = function(v)
    local n, is_float = V.num(v)
    if not n then raise("type", "bad operand type for abs(): '%s'", V.type_name(v)) end
    if is_float then return V.make_float(math.abs(n)) end
    return math.abs(n)
end
-- Rounds to prec decimals, ties to even, judged on the exact binary value
-- (as CPython's round does): the exact digits come from %f with 30 spare
-- decimals, which LuaJIT prints exactly.
local function round_half_even(n, prec)
    local text = string.format("%." .. (prec + 30) .. "f", math.abs(n))
    local int, frac = text:match("^(%d+)%.(%d+)$")
    local keep, rest = frac:sub(1, prec), frac:sub(prec + 1)
    local digits = int .. keep
    local up
    local first = rest:sub(1, 1)
    if first > "5" then up = true
    elseif first < "5" then up = false
    elseif rest:sub(2):find("[1-9]") then up = true
    else up = tonumber(digits:sub(-1)) % 2 == 1 end
    if up then
        -- add one unit in the last place, carrying through the digits
        local out, carry = {}, 1
        for i = #digits, 1, -1 do
            local d = tonumber(digits:sub(i, i)) + carry
            carry = d == 10 and 1 or 0
            out[i] = tostring(d % 10)
        end
        digits = (carry == 1 and "1" or "") .. table.concat(out)
    end
    local r = tonumber(digits:sub(1, #digits - prec) .. "." .. digits:sub(#digits - prec + 1) .. "0")
    return n < 0 and -r or r
end

F.round = function(v, a, k)
    local p = bind("round", { { "precision", 0 }, { "method", "common" } }, a, k)
    local n, is_float = V.num(v)
    if not n then raise("type", "type %s doesn't define __round__ method", V.type_name(v)) end
    local prec = V.to_int(p.precision) or 0
    local method = p.method
    if method ~= "common" and method ~= "ceil" and method ~= "floor" then
        raise("filter_argument", "method must be common, ceil or floor")
    end
    if n ~= n or n == math.huge or n == -math.huge then return v end
    if method == "common" then
        -- Python's round(): the nearest decimal, ties to even, judged on the
        -- exact binary value, which is what C's printf rounding does too.
        local r
        if prec >= 0 then
            r = round_half_even(n, prec)
        else
            local m = 10 ^ -prec
            local q = n / m
            local f = math.floor(q)
            local d = q - f
            if d > 0.5 or (d == 0.5 and f % 2 == 1) then f = f + 1 end
            r = f * m
        end
        if not is_float then return r == 0 and 0 or r end
        return V.make_float(r)
    end
    local scale = 10 ^ prec
    local r = method == "ceil" and math.ceil(n * scale) or math.floor(n * scale)
    return V.make_float(r / scale)
end
F.sum = function(v, a, k, rt)
    local p = bind("sum", { { "attribute", null }, { "start", 0 } }, a, k)
    local get = attrgetter(rt, p.attribute)
    local total = p.start
    for _, item in ipairs(V.iterate(v)) do
        total = V.arith("add", total, get(item), rt.max_output)
    end
    return total
end

------------------------------------------------------------------ sequences

F.length = function(v) return V.length(v) end
F.count = F.length
F.list = function(v) return V.list(V.iterate(v)) end
F.first = function(v)
    if kind(v) == "iterator" then
        local item = V.next_item(v)
        if item == nil then return V.undefined(nil, nil, "No first item, sequence was empty.") end
        return item
    end
    local items = V.iterate(v)
    if #items == 0 then return V.undefined(nil, nil, "No first item, sequence was empty.") end
    return items[1]
end
F.last = function(v)
    local k = kind(v)
    if k == "undefined" then return V.undefined(nil, nil, "No last item, sequence was empty.") end
    if k ~= "list" and k ~= "tuple" and k ~= "str" and k ~= "dict" and k ~= "markup" and k ~= "view" then
        V.check_defined(v)
        raise("type", "'%s' object is not reversible", V.type_name(v))
    end
    local items = V.iterate(v)
    if #items == 0 then return V.undefined(nil, nil, "No last item, sequence was empty.") end
    return items[#items]
end
-- reverse: strings reversed; sequences as Python's reversed() iterator;
-- other iterables as a reversed list.
local REVERSED_TYPE = { list = "list_reverseiterator", tuple = "reversed", dict = "dict_reversekeyiterator",
    view = "reversed", undefined = "reversed" }
F.reverse = function(v)
    local k = kind(v)
    if k == "str" or k == "markup" then return V.slice(v, nil, nil, -1) end
    local function reversed()
        local items = V.iterate(v)
        local out = {}
        for i = #items, 1, -1 do out[#out + 1] = items[i] end
        return out
    end
    if REVERSED_TYPE[k] then return V.iterator(REVERSED_TYPE[k], reversed) end
    if k == "iterator" then return V.list(reversed()) end
    raise("filter_argument", "argument must be iterable")
end
F.join = function(v, a, k, rt)
    local p = bind("join", { { "d", "" }, { "attribute", null } }, a, k)
    local items = V.iterate(v)
    local get = p.attribute ~= null and attrgetter(rt, p.attribute) or nil
    local parts = {}
    for i, item in ipairs(items) do
        if get then item = get(item) end
        parts[i] = to_str(item)
    end
    return concat(parts, to_str(p.d))
end
F.default = function(v, a, k)
    local p = bind("default", { { "default_value", "" }, { "boolean", false } }, a, k)
    if getmetatable(v) == V.Undefined or (V.truth(p.boolean) and not V.truth(v)) then
        return p.default_value
    end
    return v
end
F.d = F.default
F.items = function(v)
    return V.iterator("generator", function()
        local k = kind(v)
        if k == "undefined" then return {} end
        if k ~= "dict" then raise("type", "Can only get item pairs from a mapping.") end
        local out = {}
        for i, key in ipairs(json.keys(v)) do out[i] = V.tuple({ key, v[key] }) end
        return out
    end)
end
F.dictsort = function(v, a, k)
    local p = bind("dictsort", { { "case_sensitive", false }, { "by", "key" }, { "reverse", false } }, a, k)
    local pos
    if p.by == "key" then pos = 1 elseif p.by == "value" then pos = 2
    else raise("filter_argument", 'You can only sort by either "key" or "value"') end
    if kind(v) ~= "dict" then V.check_defined(v); raise("type", "'%s' object has no attribute 'items'", V.type_name(v)) end
    local pairs_ = {}
    for i, key in ipairs(json.keys(v)) do pairs_[i] = V.tuple({ key, v[key] }) end
    local cs = V.truth(p.case_sensitive)
    return V.list(sorted(pairs_, function(item)
        local x = item[pos]
        if not cs then x = lower_if_str(x) end
        return x
    end, V.truth(p.reverse)))
end
F.sort = function(v, a, k, rt)
    local p = bind("sort", { { "reverse", false }, { "case_sensitive", false }, { "attribute", null } }, a, k)
    local cs = V.truth(p.case_sensitive)
    local post = not cs and lower_if_str or nil
    local getters = {}
    if type(p.attribute) == "string" then
        for part in (p.attribute .. ","):gmatch("(.-),") do getters[#getters + 1] = attrgetter(rt, part, post) end
    else
        getters[1] = attrgetter(rt, p.attribute, post)
    end
    return V.list(sorted(V.iterate(v), function(item)
        local key = {}
        for i, g in ipairs(getters) do key[i] = g(item) end
        return V.list(key)
    end, V.truth(p.reverse)))
end
F.unique = function(v, a, k, rt)
    local p = bind("unique", { { "case_sensitive", false }, { "attribute", null } }, a, k)
    local get = attrgetter(rt, p.attribute, not V.truth(p.case_sensitive) and lower_if_str or nil)
    return V.iterator("generator", function()
    local seen, out = {}, {}
    for _, item in ipairs(V.iterate(v)) do
        local key = get(item)
        local dup = false
        for _, s in ipairs(seen) do
            if V.eq(s, key) then dup = true; break end
        end
        if not dup then
            seen[#seen + 1] = key
            out[#out + 1] = item
        end
    end
    return out
    end)
end
local function min_or_max(name, want)
    return function(v, a, k, rt)
        local p = bind(name, { { "case_sensitive", false }, { "attribute", null } }, a, k)
        local items = V.iterate(v)
        if #items == 0 then return V.undefined(nil, nil, "No aggregated item, sequence was empty.") end
        local get = attrgetter(rt, p.attribute, not V.truth(p.case_sensitive) and lower_if_str or nil)
        local best, best_key = items[1], get(items[1])
        for i = 2, #items do
            local key = get(items[i])
            if V.compare(want, key, best_key) then best, best_key = items[i], key end
        end
        return best
    end
end
F.min = min_or_max("min", "lt")
F.max = min_or_max("max", "gt")
F.batch = function(v, a, k)
    local p = bind("batch", { { "linecount" }, { "fill_with", null } }, a, k)
    local n = V.to_int(p.linecount)
    return V.iterator("generator", function()
    if not n or n <= 0 then raise("value", "batch size must be positive") end
    local out, cur = {}, {}
    for _, item in ipairs(V.iterate(v)) do
        if #cur == n then out[#out + 1] = V.list(cur); cur = {} end
        cur[#cur + 1] = item
    end
    if #cur > 0 then
        if p.fill_with ~= null then while #cur < n do cur[#cur + 1] = p.fill_with end end
        out[#out + 1] = V.list(cur)
    end
    return out
    end)
end
F.slice = function(v, a, k)
    local p = bind("slice", { { "slices" }, { "fill_with", null } }, a, k)
    return V.iterator("generator", function()
    local seq = V.iterate(v)
    local slices = V.to_int(p.slices)
    if not slices or slices <= 0 then raise("value", "slices must be positive") end
    local length = #seq
    local per, extra = math.floor(length / slices), length % slices
    local offset = 0
    local out = {}
    for n = 0, slices - 1 do
        local start = offset + n * per
        if n < extra then offset = offset + 1 end
        local stop = offset + (n + 1) * per
        local tmp = {}
        for i = start + 1, stop do tmp[#tmp + 1] = seq[i] end
        if p.fill_with ~= null and n >= extra then tmp[#tmp + 1] = p.fill_with end
        out[#out + 1] = V.list(tmp)
    end
    return out
    end)
end
F.groupby = function(v, a, k, rt)
    local p = bind("groupby", { { "attribute" }, { "default", null }, { "case_sensitive", false } }, a, k)
    local cs = V.truth(p.case_sensitive)
    local key = attrgetter(rt, p.attribute, not cs and lower_if_str or nil, p.default)
    local items = sorted(V.iterate(v), key)
    local out = {}
    local out_key = attrgetter(rt, p.attribute, nil, p.default)
    for _, item in ipairs(items) do
        local kv = key(item)
        local last = out[#out]
        if last and V.eq(last.key, kv) then
            last.items[#last.items + 1] = item
        else
            out[#out + 1] = { key = kv, items = { item } }
        end
    end
    local result = {}
    for i, g in ipairs(out) do
        local t = V.tuple({ cs and g.key or out_key(g.items[1]), V.list(g.items) })
        t._fields = { grouper = 1, list = 2 } -- a namedtuple
        result[i] = t
    end
    return V.list(result)
end
F.attr = function(v, a, k, rt)
    local p = bind("attr", { { "name" } }, a, k)
    local name = p.name
    if kind(v) == "dict" then
        -- attr() looks for Python attributes only, never dict items.
        local m = methods.lookup(v, "dict", name)
        if m then return m end
        return V.undefined(name, v)
    end
    return rt:getattr(v, name)
end

-- map(attribute=..., default=...) or map('filter', args...)
F.map = function(v, a, k, rt)
    return V.iterator("generator", function()
        -- all of it lazy, as jinja2's generator: nothing happens for a
        -- falsy value, and argument errors surface only when consumed
        if not V.truth(v) then return {} end
        local func
        if #a == 0 and k and k.attribute ~= nil then
            for _, key in ipairs(json.keys(k)) do
                if key ~= "attribute" and key ~= "default" then
                    raise("filter_argument", "Unexpected keyword argument '%s'", key)
                end
            end
            func = attrgetter(rt, k.attribute, nil, k.default)
        else
            local name = a[1]
            if name == nil then raise("filter_argument", "map requires a filter argument") end
            local f = rt.filters[name]
            if not f then raise("runtime", "No filter named '%s'.", tostring(name)) end
            local rest = { unpack(a, 2) }
            func = function(item) return f(item, rest, k, rt) end
        end
        local out = {}
        for i, item in ipairs(V.iterate(v)) do out[i] = func(item) end
        return out
    end)
end

local function select_or_reject(want, lookup_attr)
    return function(v, a, k, rt)
        return V.iterator("generator", function()
        if not V.truth(v) then return {} end
        local transform = function(x) return x end
        local off = 0
        if lookup_attr then
            if a[1] == nil then raise("filter_argument", "Missing parameter for attribute name") end
            transform = attrgetter(rt, a[1])
            off = 1
        end
        local test
        local name = a[off + 1]
        if name ~= nil then
            local t = rt.tests[name]
            if not t then raise("runtime", "No test named '%s'.", tostring(name)) end
            local rest = { unpack(a, off + 2) }
            test = function(x) return t(x, rest, k, rt) end
        else
            test = V.truth
        end
        local out = {}
        for _, item in ipairs(V.iterate(v)) do
            if (test(transform(item)) and true or false) == want then out[#out + 1] = item end
        end
        return out
        end)
    end
end
F.select = select_or_reject(true, false)
F.reject = select_or_reject(false, false)
F.selectattr = select_or_reject(true, true)
F.rejectattr = select_or_reject(false, true)

------------------------------------------------------------------ tojson

-- tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
F.tojson = function(v, a, k)
    local p = bind("tojson", { { "ensure_ascii", false }, { "indent", null }, { "separators", null }, { "sort_keys", false } }, a, k)
    local indent = p.indent
    if indent == null then
        indent = nil
    elseif type(indent) ~= "string" then
        local n, is_float = V.num(indent)
        if not n or is_float then raise("type", "indent must be an int or a str, not %s", V.type_name(indent)) end
        indent = n
    end
    local seps
    if p.separators ~= null then
        local s = V.iterate(p.separators)
        if #s ~= 2 or type(s[1]) ~= "string" or type(s[2]) ~= "string" then
            raise("value", "separators must be a pair of strings")
        end
        seps = s
    end
    local text, err = json.encode(v, {
        indent = indent, separators = seps, sort_keys = V.truth(p.sort_keys),
        ensure_ascii = V.truth(p.ensure_ascii),
        default = function(x)
            if kind(x) == "markup" then return x.text end
            if kind(x) == "tuple" then
                local out = {}
                for i = 1, #x do out[i] = x[i] end
                return json.array(out)
            end
            raise("type", "Object of type %s is not JSON serializable", V.type_name(x))
        end,
        type_name = V.type_name,
    })
    if not text then raise("type", "%s", err) end
    return text
end

return F
