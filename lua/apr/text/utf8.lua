-- text/utf8.lua — the UTF-8 and Python-str helpers that json.lua and the Jinja
-- interpreter share: strict validation, code point iteration, Python's
-- notion of whitespace, and case mapping.
--
-- Strings are Lua byte strings holding UTF-8. Python strings can hold lone
-- surrogates (json.loads("\"\\ud800\"") does), so encode() writes them the
-- way WTF-8 does (ED A0 80) instead of failing. Functions that walk code
-- points are lenient: a byte that does not start a valid sequence counts as
-- one character of its own, so malformed text never raises.
local M = {}

local byte, char, sub, find = string.byte, string.char, string.sub, string.find
local floor = math.floor

-- Code point -> UTF-8 bytes. Surrogates (D800..DFFF) are encoded as is.
function M.encode(cp)
    if cp < 0x80 then
        return char(cp)
    elseif cp < 0x800 then
        return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
    elseif cp < 0x10000 then
        return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
    end
    return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
        0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

-- Decodes the character at byte i: code point and byte length. Invalid or
-- truncated sequences give (byte value, 1) — the lenient reading. A WTF-8
-- surrogate (ED A0..BF xx) decodes to its surrogate code point.
function M.decode(s, i)
    local c = byte(s, i)
    if c < 0x80 then return c, 1 end
    local n, cp, min
    if c >= 0xC2 and c <= 0xDF then n, cp, min = 1, c - 0xC0, 0x80
    elseif c >= 0xE0 and c <= 0xEF then n, cp, min = 2, c - 0xE0, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then n, cp, min = 3, c - 0xF0, 0x10000
    else return c, 1 end
    for k = 1, n do
        local d = byte(s, i + k)
        if not d or d < 0x80 or d > 0xBF then return c, 1 end
        cp = cp * 0x40 + (d - 0x80)
    end
    if cp < min or cp > 0x10FFFF then return c, 1 end
    return cp, n + 1
end

-- Strict validation, as Python's UTF-8 decoder does it: no overlongs, no
-- surrogates, nothing above U+10FFFF. Returns true, or false and the byte
-- offset (1-based) of the first bad sequence.
function M.validate(s)
    local i = find(s, "[\128-\255]")
    while i do
        local c = byte(s, i)
        local n, lo, hi = 0, 0x80, 0xBF
        if c >= 0xC2 and c <= 0xDF then n = 1
        elseif c == 0xE0 then n, lo = 2, 0xA0
        elseif c == 0xED then n, hi = 2, 0x9F
        elseif c >= 0xE1 and c <= 0xEF then n = 2
        elseif c == 0xF0 then n, lo = 3, 0x90
        elseif c == 0xF4 then n, hi = 3, 0x8F
        elseif c >= 0xF1 and c <= 0xF3 then n = 3
        else return false, i end
        local d = byte(s, i + 1)
        if not d or d < lo or d > hi then return false, i end
        for k = 2, n do
            d = byte(s, i + k)
            if not d or d < 0x80 or d > 0xBF then return false, i end
        end
        i = find(s, "[\128-\255]", i + n + 1)
    end
    return true
end

-- True when s has no byte above 0x7F (then bytes are characters).
local function ascii(s) return not find(s, "[\128-\255]") end
M.ascii = ascii

-- The characters of s as an array of strings (lenient).
function M.chars(s)
    local out, n = {}, 0
    if ascii(s) then
        for i = 1, #s do out[i] = sub(s, i, i) end
        return out
    end
    local i = 1
    while i <= #s do
        local _, len = M.decode(s, i)
        n = n + 1
        out[n] = sub(s, i, i + len - 1)
        i = i + len
    end
    return out
end

-- Number of characters (code points, lenient).
function M.len(s)
    if ascii(s) then return #s end
    local i, n = 1, 0
    while i <= #s do
        local _, len = M.decode(s, i)
        n = n + 1
        i = i + len
    end
    return n
end

-- Python's str.isspace() set, which is also what `\s` matches in Python's
-- re module and what str.strip()/split() remove: ASCII whitespace, the
-- separators 1C..1F, NEL, and the Unicode space separators.
local SPACE = {
    [0x09] = true, [0x0A] = true, [0x0B] = true, [0x0C] = true, [0x0D] = true,
    [0x1C] = true, [0x1D] = true, [0x1E] = true, [0x1F] = true, [0x20] = true,
    [0x85] = true, [0xA0] = true, [0x1680] = true, [0x2028] = true, [0x2029] = true,
    [0x202F] = true, [0x205F] = true, [0x3000] = true,
}
for cp = 0x2000, 0x200A do SPACE[cp] = true end
function M.is_space(cp) return SPACE[cp] == true end

-- Is the one-character string ch Python whitespace? (A stray byte is not.)
local function space_char(ch)
    local cp, len = M.decode(ch, 1)
    return SPACE[cp] == true and (len > 1 or cp < 0x80)
end
M.space_char = space_char

-- Strips characters from the ends of s: Python whitespace when chars is
-- nil, else any character of the string chars. which: "both"|"left"|"right".
function M.strip(s, chars, which)
    which = which or "both"
    local set
    if chars then
        set = {}
        for _, ch in ipairs(M.chars(chars)) do set[ch] = true end
    end
    local function stripped(ch)
        if set then return set[ch] end
        return space_char(ch)
    end
    if chars == nil and ascii(s) then
        -- The common case, done with patterns.
        if which ~= "right" then s = s:gsub("^[\t-\r\28-\31 ]+", "") end
        if which ~= "left" then s = s:gsub("[\t-\r\28-\31 ]+$", "") end
        return s
    end
    local cs = M.chars(s)
    local i, j = 1, #cs
    if which ~= "right" then while i <= j and stripped(cs[i]) do i = i + 1 end end
    if which ~= "left" then while j >= i and stripped(cs[j]) do j = j - 1 end end
    return table.concat(cs, "", i, j)
end

-- Python's str.split(None, maxsplit): runs of whitespace separate and the
-- ends are dropped; once maxsplit pieces are cut, the rest (leading
-- whitespace skipped, trailing kept) is the last piece. maxsplit < 0: no limit.
function M.split_whitespace(s, maxsplit)
    local cs = M.chars(s)
    local n = #cs
    local function space(k) return space_char(cs[k]) end
    local out, i, count = {}, 1, 0
    while maxsplit < 0 or count < maxsplit do
        while i <= n and space(i) do i = i + 1 end
        if i > n then break end
        local j = i
        while i <= n and not space(i) do i = i + 1 end
        out[#out + 1] = table.concat(cs, "", j, i - 1)
        count = count + 1
    end
    while i <= n and space(i) do i = i + 1 end
    if i <= n then out[#out + 1] = table.concat(cs, "", i, n) end
    return out
end

------------------------------------------------------------------ case mapping
-- Python maps case with the full Unicode tables; this covers the scripts that
-- chat templates meet in practice (ASCII, Latin-1, Latin Extended-A, Greek,
-- Cyrillic, fullwidth Latin) and leaves other characters unchanged.
local UPPER, LOWER = {}, {}
local function pair(lo, up) UPPER[lo] = up; LOWER[up] = lo end
for cp = 0x61, 0x7A do pair(cp, cp - 32) end
for cp = 0xE0, 0xFE do if cp ~= 0xF7 then pair(cp, cp - 32) end end
pair(0xFF, 0x178)
for cp = 0x100, 0x17F, 2 do
    -- Latin Extended-A alternates upper/lower, with a shifted run in the middle.
    if cp < 0x138 then pair(cp + 1, cp) end
end
for cp = 0x139, 0x148, 2 do pair(cp + 1, cp) end
for cp = 0x14A, 0x177, 2 do pair(cp + 1, cp) end
pair(0x17A, 0x179); pair(0x17C, 0x17B); pair(0x17E, 0x17D)
LOWER[0x130] = 0x69 -- İ lowers to i (Python gives i + combining dot; close enough)
UPPER[0x131] = 0x49 -- ı
for cp = 0x3B1, 0x3C9 do if cp ~= 0x3C2 then pair(cp, cp - 32) end end
UPPER[0x3C2] = 0x3A3 -- final sigma
pair(0x3AC, 0x386); pair(0x3AD, 0x388); pair(0x3AE, 0x389); pair(0x3AF, 0x38A)
pair(0x3CC, 0x38C); pair(0x3CD, 0x38E); pair(0x3CE, 0x38F)
for cp = 0x430, 0x44F do pair(cp, cp - 32) end
for cp = 0x450, 0x45F do pair(cp, cp - 80) end
for cp = 0x461, 0x481, 2 do pair(cp, cp - 1) end
for cp = 0x48B, 0x4BF, 2 do pair(cp, cp - 1) end
for cp = 0xFF41, 0xFF5A do pair(cp, cp - 32) end

local SPECIAL_UPPER = { [0xDF] = "SS" } -- ß

local function map_case(s, tbl, special)
    if ascii(s) then
        return tbl == UPPER and s:upper() or s:lower()
    end
    local out = {}
    local i = 1
    while i <= #s do
        local cp, len = M.decode(s, i)
        local sp = special and special[cp]
        if sp and len > 1 then
            out[#out + 1] = sp
        else
            -- A stray byte decodes to its own value; it is not a character.
            local m = (len > 1 or cp < 0x80) and tbl[cp] or nil
            out[#out + 1] = m and M.encode(m) or sub(s, i, i + len - 1)
        end
        i = i + len
    end
    return table.concat(out)
end

function M.upper(s) return map_case(s, UPPER, SPECIAL_UPPER) end
function M.lower(s) return map_case(s, LOWER) end

-- True when the character is a cased letter (has a case mapping) — what
-- Python's islower/isupper/capitalize look at, within the covered scripts.
function M.is_upper(cp) return LOWER[cp] ~= nil end
function M.is_lower(cp) return UPPER[cp] ~= nil or cp == 0xDF end

return M
