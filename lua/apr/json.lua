-- json.lua — JSON with Python's semantics, so that chat templates render the
-- same bytes as Hugging Face's Python stack.
--
-- Decoding keeps what Python's json.loads keeps and cjson loses:
--   * objects remember their key order (ordered objects, see json.object);
--   * arrays and objects stay distinct, empty ones included;
--   * null is json.null, distinct from a missing key;
--   * 1 and 1.0 differ: integers are Lua numbers, and a float with an
--     integral value (1.0, 2e3) is boxed with json.float so that it prints
--     as Python prints it; integers beyond 2^53 keep their digits (json.bigint).
-- Encoding reproduces json.dumps(x, ensure_ascii=False, indent=..,
-- separators=.., sort_keys=..) byte for byte, floats in Python's repr.
--
-- decode and encode return nil plus a message for bad input; they raise only
-- when called with the wrong argument types.
local utf8 = require "apr.text.utf8"

local json = {}

local byte, sub, find, format, concat = string.byte, string.sub, string.find, string.format, table.concat
local floor, huge = math.floor, math.huge

------------------------------------------------------------------ values

-- null: cjson's, when cjson is there, so values decoded by either library
-- mean the same thing.
do
    local ok, cjson = pcall(require, "cjson")
    json.null = ok and cjson.null or setmetatable({}, { __tostring = function() return "null" end })
end

-- Ordered objects: the values live in the table itself (o.name works), the
-- key order in a side table, appended to by __newindex whenever a new key
-- is stored. Deleting a key (o.k = nil) and storing it again keeps its first
-- position.
local Object = { __name = "json.object" }
local order = setmetatable({}, { __mode = "k" }) -- object -> { keys = {..}, index = {key = i} }

function Object.__newindex(o, k, v)
    rawset(o, k, v)
    if v == nil then return end
    local rec = order[o]
    if not rec.index[k] then
        local n = #rec.keys + 1
        rec.keys[n] = k
        rec.index[k] = n
    end
end

function json.object()
    local o = setmetatable({}, Object)
    order[o] = { keys = {}, index = {} }
    return o
end

local Array = { __name = "json.array" }
function json.array(t) return setmetatable(t or {}, Array) end

-- A float whose value is integral (Python prints 1.0, not 1), or -0.0.
local Float = { __name = "json.float" }
function json.float(x) return setmetatable({ value = x }, Float) end

-- An integer too large for a double to hold exactly; text keeps its digits.
local BigInt = { __name = "json.bigint" }
function json.bigint(text) return setmetatable({ value = tonumber(text), text = text }, BigInt) end

function json.is_object(v) return getmetatable(v) == Object end
function json.is_array(v) return getmetatable(v) == Array end

-- The Lua number of a JSON number, boxed or not (nil for anything else).
function json.tonumber(v)
    if type(v) == "number" then return v end
    local mt = getmetatable(v)
    if mt == Float or mt == BigInt then return v.value end
    return nil
end

Float.__tostring = function(f) return json.float_repr(f.value) end
BigInt.__tostring = function(b) return b.text end

-- A plain Lua number counts as an int when it is integral and exactly
-- representable (|x| < 2^53); anything larger came from float arithmetic.
local function is_integral(x) return x == floor(x) and x > -2 ^ 53 and x < 2 ^ 53 end
json.is_int = is_integral

-- The kind of a Lua value seen as a Python/JSON value: "null", "bool",
-- "int", "float", "str", "list", "dict", or nil for anything else. Plain
-- tables are lists when their keys are exactly 1..n (n > 0) and dicts
-- otherwise (so {} is an empty dict, as cjson encodes it).
function json.kind(v)
    local t = type(v)
    if t == "string" then return "str"
    elseif t == "number" then
        if is_integral(v) then return "int" end
        return "float"
    elseif t == "boolean" then return "bool"
    elseif v == json.null then return "null"
    elseif t == "table" then
        local mt = getmetatable(v)
        if mt == Object then return "dict"
        elseif mt == Array then return "list"
        elseif mt == Float then return "float"
        elseif mt == BigInt then return "int"
        elseif mt ~= nil then return nil
        end
        local n = #v
        if n > 0 then
            local count = 0
            for _ in pairs(v) do count = count + 1 end
            if count == n then return "list" end
        end
        return "dict"
    end
    return nil
end

-- Keys of a dict in order: insertion order for ordered objects; for plain
-- Lua tables (whose order Lua does not keep) numbers first, then strings,
-- each sorted, so output is at least deterministic.
function json.keys(o)
    local rec = order[o]
    local out = {}
    if rec then
        for _, k in ipairs(rec.keys) do
            if rawget(o, k) ~= nil then out[#out + 1] = k end
        end
        return out
    end
    for k in pairs(o) do out[#out + 1] = k end
    table.sort(out, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then
            if ta == "number" then return true end
            if tb == "number" then return false end
            return ta < tb
        end
        if ta == "number" or ta == "string" then return a < b end
        return tostring(a) < tostring(b)
    end)
    return out
end

-- for k, v in json.pairs(o): pairs in key order.
function json.pairs(o)
    local keys = json.keys(o)
    local i = 0
    return function()
        i = i + 1
        local k = keys[i]
        if k ~= nil then return k, o[k] end
    end
end

------------------------------------------------------------------ Python float repr

-- The first p significant digits of x > 0, rounded to nearest with ties to
-- even (Python's rule; C's printf in LuaJIT rounds ties away from zero),
-- and the decimal exponent of the first digit. LuaJIT prints %e exactly,
-- so 30 extra digits show whether the rest is exactly half.
local function round_digits(x, p)
    local s = format("%." .. (p + 29) .. "e", x)
    local lead, frac, exp = s:match("^(%d)%.(%d+)e([-+]%d+)$")
    local all = lead .. frac
    local keep, rest = all:sub(1, p), all:sub(p + 1)
    local e = tonumber(exp)
    local first = rest:sub(1, 1)
    local up = first > "5" or (first == "5" and (rest:find("[1-9]", 2) or tonumber(keep:sub(-1)) % 2 == 1))
    if up then
        local out, carry = {}, 1
        for i = #keep, 1, -1 do
            local d = tonumber(keep:sub(i, i)) + carry
            carry = d == 10 and 1 or 0
            out[i] = tostring(d % 10)
        end
        keep = table.concat(out)
        if carry == 1 then keep, e = "1" .. keep:sub(1, -2), e + 1 end
    end
    return keep, e
end

-- repr(float) as Python prints it: the shortest decimal that reads back to
-- the same double, in fixed notation for exponents -4..15 and scientific
-- ("1e+16", "1.5e-05") outside. Non-finite values give Python's names.
function json.float_repr(x)
    if x ~= x then return "nan" end
    if x == huge then return "inf" end
    if x == -huge then return "-inf" end
    if x == 0 then return 1 / x < 0 and "-0.0" or "0.0" end
    local sign = x < 0 and "-" or ""
    local digits, e
    for p = 1, 17 do
        digits, e = round_digits(math.abs(x), p)
        if tonumber(sign .. digits:sub(1, 1) .. "." .. digits:sub(2) .. "e" .. e) == x then break end
    end
    digits = digits:gsub("0+$", "")
    if digits == "" then digits = "0" end
    if e < -4 or e >= 16 then
        local m = digits:sub(1, 1)
        if #digits > 1 then m = m .. "." .. digits:sub(2) end
        return format("%s%se%s%02d", sign, m, e < 0 and "-" or "+", math.abs(e))
    elseif e < 0 then
        return sign .. "0." .. string.rep("0", -e - 1) .. digits
    elseif #digits <= e + 1 then
        return sign .. digits .. string.rep("0", e + 1 - #digits) .. ".0"
    end
    return sign .. digits:sub(1, e + 1) .. "." .. digits:sub(e + 2)
end

-- str(int) for a Lua number holding an integer (no "-0", no exponent).
function json.int_repr(x)
    if x == 0 then return "0" end
    if x > -1e15 and x < 1e15 then return format("%d", x) end
    return format("%.0f", x)
end

------------------------------------------------------------------ decoding

local Fail = {}

local function position(s, i)
    local line, last = 1, 0
    local p = find(s, "\n", 1, true)
    while p and p < i do
        line, last = line + 1, p
        p = find(s, "\n", p + 1, true)
    end
    return line, i - last
end

local function fail(s, i, msg)
    local line, col = position(s, i)
    -- Python's wording; the offset is 0-based, as Python's "char" is.
    error(setmetatable({ message = format("%s: line %d column %d (byte %d)", msg, line, col, i - 1) }, Fail), 0)
end

local ESCAPES = {
    [0x22] = '"', [0x5C] = "\\", [0x2F] = "/", [0x62] = "\b",
    [0x66] = "\f", [0x6E] = "\n", [0x72] = "\r", [0x74] = "\t",
}

local Decoder = {}
Decoder.__index = Decoder

function Decoder:ws(i)
    return find(self.s, "[^ \t\n\r]", i) or #self.s + 1
end

function Decoder:hex4(i)
    local h = self.s:match("^%x%x%x%x", i)
    if not h then fail(self.s, i - 2, "Invalid \\uXXXX escape") end
    return tonumber(h, 16)
end

-- A lone surrogate: Python keeps it in the string; "replace" gives U+FFFD,
-- "error" rejects the document.
function Decoder:surrogate(cp, i)
    local how = self.lone_surrogates
    if how == "error" then fail(self.s, i, "Lone surrogate \\u" .. format("%04x", cp)) end
    if how == "replace" then return "\239\191\189" end
    return utf8.encode(cp)
end

function Decoder:string(i)
    local s, parts, start = self.s, {}, i
    i = i + 1
    while true do
        local j = find(s, '[%z\1-\31"\\]', i)
        if not j then fail(s, start, "Unterminated string starting at") end
        if j > i then parts[#parts + 1] = sub(s, i, j - 1) end
        local c = byte(s, j)
        if c == 0x22 then
            return concat(parts), j + 1
        elseif c == 0x5C then
            local e = byte(s, j + 1)
            if e == 0x75 then
                local cp = self:hex4(j + 2)
                i = j + 6
                if cp >= 0xD800 and cp <= 0xDBFF and sub(s, i, i + 1) == "\\u" then
                    local lo = self:hex4(i + 2)
                    if lo >= 0xDC00 and lo <= 0xDFFF then
                        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
                        i = i + 6
                    end
                end
                if cp >= 0xD800 and cp <= 0xDFFF then
                    parts[#parts + 1] = self:surrogate(cp, j)
                else
                    parts[#parts + 1] = utf8.encode(cp)
                end
            elseif e and ESCAPES[e] then
                parts[#parts + 1] = ESCAPES[e]
                i = j + 2
            else
                fail(s, j, "Invalid \\escape")
            end
        else
            fail(s, j, "Invalid control character at")
        end
    end
end

-- Python's int() refuses more than 4300 digits (sys.int_info.str_digits_check_threshold).
local MAX_INT_DIGITS = 4300

function Decoder:number(i)
    local s = self.s
    local int = s:match("^-?0", i) or s:match("^-?[1-9]%d*", i)
    if not int then fail(s, i, "Expecting value") end
    local j = i + #int
    local frac = s:match("^%.%d+", j)
    if frac then j = j + #frac end
    local exp = s:match("^[eE][-+]?%d+", j)
    if exp then j = j + #exp end
    local text = sub(s, i, j - 1)
    local x = tonumber(text)
    if x == nil then
        -- An exponent too long for strtod: Python's float() gives inf or 0.0.
        local neg = sub(text, 1, 1) == "-"
        if not (int .. (frac or "")):find("[1-9]") or exp:find("-", 1, true) then
            x = neg and -0.0 or 0.0
        else
            x = neg and -huge or huge
        end
    end
    if not frac and not exp then
        if #int > MAX_INT_DIGITS then fail(s, i, "Integer has too many digits") end
        if x ~= 0 and (x >= 2 ^ 53 or x <= -2 ^ 53) and not self.plain_numbers then
            return json.bigint((text:gsub("^(-?)0*(%d)", "%1%2"))), j
        end
        if x == 0 then x = 0 end -- "-0" is the int 0 in Python
        return x, j
    end
    if not self.plain_numbers and (is_integral(x) or x == 0) then
        return json.float(x), j
    end
    return x, j
end

function Decoder:value(i, depth)
    local s = self.s
    i = self:ws(i)
    local c = byte(s, i)
    if c == 0x22 then
        return self:string(i)
    elseif c == 0x7B then
        return self:object(i, depth + 1)
    elseif c == 0x5B then
        return self:array(i, depth + 1)
    elseif c == 0x74 and sub(s, i, i + 3) == "true" then
        return true, i + 4
    elseif c == 0x66 and sub(s, i, i + 4) == "false" then
        return false, i + 5
    elseif c == 0x6E and sub(s, i, i + 3) == "null" then
        return json.null, i + 4
    elseif self.allow_nan and sub(s, i, i + 2) == "NaN" then
        return 0 / 0, i + 3
    elseif self.allow_nan and sub(s, i, i + 7) == "Infinity" then
        return huge, i + 8
    elseif self.allow_nan and sub(s, i, i + 8) == "-Infinity" then
        return -huge, i + 9
    end
    return self:number(i)
end

function Decoder:check_depth(i, depth)
    if depth > self.max_depth then
        fail(self.s, i, format("Nesting deeper than %d levels", self.max_depth))
    end
end

function Decoder:array(i, depth)
    self:check_depth(i, depth)
    local s, out, n = self.s, json.array(), 0
    i = self:ws(i + 1)
    if byte(s, i) == 0x5D then return out, i + 1 end
    while true do
        local v
        v, i = self:value(i, depth)
        n = n + 1
        out[n] = v
        i = self:ws(i)
        local c = byte(s, i)
        if c == 0x5D then return out, i + 1 end
        if c ~= 0x2C then fail(s, i, "Expecting ',' delimiter") end
        i = i + 1
    end
end

function Decoder:object(i, depth)
    self:check_depth(i, depth)
    local s = self.s
    local out = json.object()
    local rec = order[out]
    local keys, index = rec.keys, rec.index
    i = self:ws(i + 1)
    if byte(s, i) == 0x7D then return out, i + 1 end
    while true do
        if byte(s, i) ~= 0x22 then fail(s, i, "Expecting property name enclosed in double quotes") end
        local k, v
        k, i = self:string(i)
        i = self:ws(i)
        if byte(s, i) ~= 0x3A then fail(s, i, "Expecting ':' delimiter") end
        v, i = self:value(i + 1, depth)
        -- A repeated key keeps its first position and takes the last value,
        -- as a Python dict built from the pairs does.
        if not index[k] then
            keys[#keys + 1] = k
            index[k] = #keys
        end
        rawset(out, k, v)
        i = self:ws(i)
        local c = byte(s, i)
        if c == 0x7D then return out, i + 1 end
        if c ~= 0x2C then fail(s, i, "Expecting ',' delimiter") end
        i = self:ws(i + 1)
    end
end

-- json.decode(text [, opts]) -> value | nil, message
-- opts: max_depth (512), allow_nan (false: NaN/Infinity are not JSON),
-- lone_surrogates ("preserve" as Python | "replace" | "error"),
-- plain_numbers (true: every number a plain Lua number, no boxes).
-- The text must be UTF-8 (a leading BOM is skipped, as json.loads does
-- for bytes).
function json.decode(text, opts)
    if type(text) ~= "string" then error("json.decode: expected a string, got " .. type(text), 2) end
    opts = opts or {}
    local ok, bad = utf8.validate(text)
    if not ok then
        return nil, format("Invalid UTF-8 at byte %d", bad)
    end
    local d = setmetatable({
        s = text,
        max_depth = opts.max_depth or 512,
        allow_nan = opts.allow_nan or false,
        lone_surrogates = opts.lone_surrogates or "preserve",
        plain_numbers = opts.plain_numbers or false,
    }, Decoder)
    local start = sub(text, 1, 3) == "\239\187\191" and 4 or 1
    local okv, v, i = pcall(function()
        local v, i = d:value(start, 0)
        i = d:ws(i)
        if i <= #text then fail(text, i, "Extra data") end
        return v, i
    end)
    if okv then return v end
    if getmetatable(v) == Fail then return nil, v.message end
    error(v, 0)
end

------------------------------------------------------------------ encoding

local Unserializable = {}

local STRING_ESCAPES = {
    ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
    ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f",
}
for b = 0, 31 do
    local c = string.char(b)
    STRING_ESCAPES[c] = STRING_ESCAPES[c] or format("\\u%04x", b)
end

local function quote_ascii(s)
    -- ensure_ascii=True: DEL and every non-ASCII character as \uXXXX
    -- (surrogate pairs above the BMP); a stray byte becomes U+FFFD.
    local out = {}
    local i = 1
    while i <= #s do
        local j = find(s, "[\127-\255]", i)
        if not j then out[#out + 1] = sub(s, i); break end
        out[#out + 1] = sub(s, i, j - 1)
        local cp, len = utf8.decode(s, j)
        if len == 1 and cp >= 0x80 then cp = 0xFFFD end
        if cp >= 0x10000 then
            local v = cp - 0x10000
            out[#out + 1] = format("\\u%04x\\u%04x", 0xD800 + floor(v / 0x400), 0xDC00 + v % 0x400)
        else
            out[#out + 1] = format("\\u%04x", cp)
        end
        i = j + len
    end
    return concat(out)
end

-- A lone surrogate (kept by decode as WTF-8 bytes) has no UTF-8 form:
-- Python's text would hold it raw, unencodable; here it is escaped.
local function escape_surrogate(seq)
    local cp = utf8.decode(seq, 1)
    return format("\\u%04x", cp)
end

local function quote(s, ensure_ascii)
    s = s:gsub('[%z\1-\31"\\]', STRING_ESCAPES)
    if ensure_ascii then
        if find(s, "[\127-\255]") then s = quote_ascii(s) end
    elseif find(s, "\237[\160-\191]") then
        s = s:gsub("\237[\160-\191][\128-\191]", escape_surrogate)
    end
    return '"' .. s .. '"'
end
json.quote = quote

local function float_text(x, allow_nan)
    if x ~= x or x == huge or x == -huge then
        if not allow_nan then
            error(setmetatable({ message = "Out of range float values are not JSON compliant" }, Unserializable), 0)
        end
        return x ~= x and "NaN" or (x > 0 and "Infinity" or "-Infinity")
    end
    return json.float_repr(x)
end

local Encoder = {}
Encoder.__index = Encoder

function Encoder:unserializable(msg)
    error(setmetatable({ message = msg }, Unserializable), 0)
end

-- A dict key as json.dumps converts it.
function Encoder:key(k)
    local kind = json.kind(k)
    if kind == "str" then return k
    elseif kind == "int" then return type(k) == "table" and k.text or json.int_repr(k)
    elseif kind == "float" then return float_text(json.tonumber(k), self.allow_nan)
    elseif kind == "bool" then return k and "true" or "false"
    elseif kind == "null" then return "null"
    end
    self:unserializable("keys must be str, int, float, bool or None, not " .. (self.type_name(k)))
end

function Encoder:value(v, depth, out)
    if depth > self.max_depth then self:unserializable("Nesting deeper than " .. self.max_depth .. " levels") end
    local kind = json.kind(v)
    if kind == nil and self.default then
        v = self.default(v)
        kind = json.kind(v)
    end
    if kind == "str" then
        out[#out + 1] = quote(v, self.ensure_ascii)
    elseif kind == "int" then
        out[#out + 1] = type(v) == "table" and v.text or json.int_repr(v)
    elseif kind == "float" then
        out[#out + 1] = float_text(json.tonumber(v), self.allow_nan)
    elseif kind == "bool" then
        out[#out + 1] = v and "true" or "false"
    elseif kind == "null" then
        out[#out + 1] = "null"
    elseif kind == "list" then
        if #v == 0 then out[#out + 1] = "[]"; return end
        out[#out + 1] = "["
        local nl = self:newline(depth + 1)
        for i = 1, #v do
            if i > 1 then out[#out + 1] = self.item_sep end
            if nl then out[#out + 1] = nl end
            self:value(v[i], depth + 1, out)
        end
        if nl then out[#out + 1] = self:newline(depth) end
        out[#out + 1] = "]"
    elseif kind == "dict" then
        local keys = json.keys(v)
        if #keys == 0 then out[#out + 1] = "{}"; return end
        local pairs_ = {}
        for i, k in ipairs(keys) do pairs_[i] = { self:key(k), v[k] } end
        if self.sort_keys then
            table.sort(pairs_, function(a, b) return a[1] < b[1] end)
        end
        out[#out + 1] = "{"
        local nl = self:newline(depth + 1)
        for i, p in ipairs(pairs_) do
            if i > 1 then out[#out + 1] = self.item_sep end
            if nl then out[#out + 1] = nl end
            out[#out + 1] = quote(p[1], self.ensure_ascii)
            out[#out + 1] = self.key_sep
            self:value(p[2], depth + 1, out)
        end
        if nl then out[#out + 1] = self:newline(depth) end
        out[#out + 1] = "}"
    else
        self:unserializable("Object of type " .. self.type_name(v) .. " is not JSON serializable")
    end
end

function Encoder:newline(depth)
    if not self.indent then return nil end
    return "\n" .. string.rep(self.indent, depth)
end

local function lua_type_name(v)
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__name then return mt.__name end
    return type(v)
end

-- json.encode(value [, opts]) -> text | nil, message
-- opts, as json.dumps takes them (but ensure_ascii defaults to false, as in
-- Hugging Face's tojson):
--   indent      nil (one line) | number of spaces | string
--   separators  { item, key } (default { ", ", ": " }, or { ",", ": " } with indent)
--   sort_keys   false;  ensure_ascii  false;  allow_nan  true (NaN, Infinity)
--   default     function(v) -> a JSON value, for values json does not know
--   type_name   function(v) -> the type named in error messages
--   max_depth   512
function json.encode(value, opts)
    opts = opts or {}
    local indent = opts.indent
    if type(indent) == "number" then
        indent = string.rep(" ", indent > 0 and indent or 0)
    elseif indent ~= nil and type(indent) ~= "string" then
        error("json.encode: indent must be a number or a string", 2)
    end
    local seps = opts.separators
    local e = setmetatable({
        indent = indent,
        item_sep = seps and seps[1] or (indent and "," or ", "),
        key_sep = seps and seps[2] or ": ",
        sort_keys = opts.sort_keys or false,
        ensure_ascii = opts.ensure_ascii or false,
        allow_nan = opts.allow_nan ~= false,
        default = opts.default,
        type_name = opts.type_name or lua_type_name,
        max_depth = opts.max_depth or 512,
    }, Encoder)
    local out = {}
    local ok, err = pcall(e.value, e, value, 0, out)
    if ok then return concat(out) end
    if getmetatable(err) == Unserializable then return nil, err.message end
    error(err, 0)
end

return json
