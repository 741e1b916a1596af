-- jinja/lexer.lua — template source -> tokens, with jinja2's whitespace rules.
--
-- Follows jinja2 3.1's lexer (jinja2/lexer.py) in the behaviour that shapes
-- output: newlines normalized to "\n" and one trailing newline dropped
-- (keep_trailing_newline=False); "{%-"/"-%}" strip all whitespace on that
-- side; trim_blocks eats the first newline after a block or comment tag;
-- lstrip_blocks removes the spaces and tabs that precede a block or comment
-- tag on its line; "{%+"/"+%}" turn those two off for one tag; raw blocks;
-- brackets must balance before a tag may end.
--
-- Tokens are { type, value, line }. Types: data, variable_begin,
-- variable_end, block_begin, block_end, name, string, integer, float, eof,
-- and one per operator (add, sub, mul, div, floordiv, mod, pow, tilde,
-- lbracket, rbracket, lparen, rparen, lbrace, rbrace, eq, ne, gt, gteq, lt,
-- lteq, assign, dot, colon, pipe, comma, semicolon).
local utf8 = require "apr.text.utf8"

local M = {}

local byte, sub, find, match = string.byte, string.sub, string.find, string.match

local OPERATORS = {
    ["//"] = "floordiv", ["**"] = "pow", ["=="] = "eq", ["!="] = "ne",
    [">="] = "gteq", ["<="] = "lteq",
    ["+"] = "add", ["-"] = "sub", ["/"] = "div", ["*"] = "mul", ["%"] = "mod",
    ["~"] = "tilde", ["["] = "lbracket", ["]"] = "rbracket", ["("] = "lparen",
    [")"] = "rparen", ["{"] = "lbrace", ["}"] = "rbrace", [">"] = "gt",
    ["<"] = "lt", ["="] = "assign", ["."] = "dot", [":"] = "colon",
    ["|"] = "pipe", [","] = "comma", [";"] = "semicolon",
}
local CLOSERS = { ["{"] = "}", ["("] = ")", ["["] = "]" }

-- A lexing failure: message and line, turned into a template error upstream.
local function fail(line, msg, ...)
    error({ kind = "syntax", line = line, message = string.format(msg, ...) }, 0)
end

local function count_newlines(s, i, j)
    local n = 0
    local p = find(s, "\n", i, true)
    while p and p <= j do
        n = n + 1
        p = find(s, "\n", p + 1, true)
    end
    return n
end

-- Python whitespace (what `\s` matches) starting at byte i: its byte length,
-- or nil.
local function space_at(s, i)
    local c = byte(s, i)
    if not c then return nil end
    if c < 0x80 then
        if (c >= 9 and c <= 13) or (c >= 28 and c <= 32) then return 1 end
        return nil
    end
    local cp, len = utf8.decode(s, i)
    if len > 1 and utf8.is_space(cp) then return len end
    return nil
end

local function skip_space(s, i)
    local len = space_at(s, i)
    while len do
        i = i + len
        len = space_at(s, i)
    end
    return i
end

-- Is s[i..j] non-empty and all whitespace?
local function all_space(s, i, j)
    if i > j then return false end
    while i <= j do
        local len = space_at(s, i)
        if not len then return false end
        i = i + len
    end
    return true
end

-- Python's str.rstrip() on s[i..j]: the new end index.
local function rstrip_end(s, i, j)
    while j >= i do
        local c = byte(s, j)
        if c < 0x80 then
            if not space_at(s, j) then return j end
            j = j - 1
        else
            local k = j
            while k > i and byte(s, k) >= 0x80 and byte(s, k) < 0xC0 do k = k - 1 end
            local len = space_at(s, k)
            if not len or k + len - 1 ~= j then return j end
            j = k - 1
        end
    end
    return j
end

------------------------------------------------------------------ string literals

-- Python's "unicode-escape" decoding, which jinja2 applies to string literals.
local SIMPLE = {
    ["\\"] = "\\", ["'"] = "'", ['"'] = '"', a = "\a", b = "\b", f = "\f",
    n = "\n", r = "\r", t = "\t", v = "\v", ["\n"] = "",
}

local function unescape(body, line)
    if not find(body, "\\", 1, true) then return body end
    local out, i = {}, 1
    while true do
        local j = find(body, "\\", i, true)
        if not j then out[#out + 1] = sub(body, i); break end
        out[#out + 1] = sub(body, i, j - 1)
        local e = sub(body, j + 1, j + 1)
        if SIMPLE[e] then
            out[#out + 1] = SIMPLE[e]
            i = j + 2
        elseif match(e, "^[0-7]$") then
            local oct = match(body, "^[0-7][0-7]?[0-7]?", j + 1)
            out[#out + 1] = utf8.encode(tonumber(oct, 8))
            i = j + 1 + #oct
        elseif e == "x" or e == "u" or e == "U" then
            local width = ({ x = 2, u = 4, U = 8 })[e]
            local hex = match(body, "^" .. string.rep("%x", width), j + 2)
            if not hex then
                fail(line, "truncated \\%sXXXX escape", e)
            end
            local cp = tonumber(hex, 16)
            if cp > 0x10FFFF then fail(line, "illegal Unicode character") end
            out[#out + 1] = utf8.encode(cp)
            i = j + 2 + width
        elseif e == "N" then
            fail(line, "\\N{...} escapes are not supported")
        else
            -- Python keeps unknown escapes as written.
            out[#out + 1] = "\\"
            i = j + 1
        end
    end
    return table.concat(out)
end

------------------------------------------------------------------ inside tags

-- (\d+_)*\d+ at byte i: the index after it, or nil.
local function digit_run(s, i)
    local j = match(s, "^%d+()", i)
    if not j then return nil end
    while byte(s, j) == 95 and match(s, "^%d", j + 1) do
        j = match(s, "^%d+()", j + 1)
    end
    return j
end

-- (_?C)+ for a character class C at byte i: the index after it, or nil.
local function underscored_run(s, i, class)
    local j = i
    while true do
        local k = match(s, "^_?" .. class .. "()", j)
        if not k then break end
        j = k
    end
    return j > i and j or nil
end

-- A number literal at byte i (a digit): type, value, next index.
local function number_token(s, i, line)
    -- float: digits with a fraction and/or an exponent, not after a "."
    if byte(s, i - 1) ~= 46 then
        local a = digit_run(s, i)
        local k = a
        if byte(s, a) == 46 then k = digit_run(s, a + 1) or a end
        local e = match(s, "^[eE][-+]?()", k)
        local after_exp = e and digit_run(s, e)
        local stop = after_exp or (k > a and k) or nil
        if stop then
            return "float", tonumber((sub(s, i, stop - 1):gsub("_", ""))), stop
        end
    end
    local stop, base, digits_from
    local p = sub(s, i, i + 1):lower()
    if p == "0b" then stop, base = underscored_run(s, i + 2, "[01]"), 2
    elseif p == "0o" then stop, base = underscored_run(s, i + 2, "[0-7]"), 8
    elseif p == "0x" then stop, base = underscored_run(s, i + 2, "%x"), 16
    end
    if stop then
        digits_from = i + 2
    else
        base, digits_from = 10, i
        if byte(s, i) == 48 then
            stop = underscored_run(s, i + 1, "0") or i + 1
        else
            stop = underscored_run(s, i + 1, "%d") or i + 1
        end
    end
    local v = tonumber((sub(s, digits_from, stop - 1):gsub("_", "")), base)
    if not v then fail(line, "invalid number literal") end
    return "integer", v, stop
end

-- Reads one token inside a tag at byte i. Returns type, value, next index.
local function tag_token(s, i, line)
    local c = byte(s, i)
    if c >= 48 and c <= 57 then return number_token(s, i, line) end
    -- names (ASCII identifiers, plus any non-ASCII letters as Python allows)
    local name = match(s, "^[%a_\128-\255][%w_\128-\255]*", i)
    if name then
        return "name", name, i + #name
    end
    if c == 39 or c == 34 then
        local q = sub(s, i, i)
        local j = i + 1
        while true do
            local k = find(s, q == "'" and "['\\]" or '["\\]', j)
            if not k then fail(line, "unexpected char '%s' at %d", q, i - 1) end
            if byte(s, k) == 92 then
                j = k + 2
            else
                local body = sub(s, i + 1, k - 1)
                return "string", unescape(body, line), k + 1
            end
        end
    end
    local two = sub(s, i, i + 1)
    if OPERATORS[two] and #two == 2 then return OPERATORS[two], two, i + 2 end
    local one = sub(s, i, i)
    if OPERATORS[one] then return OPERATORS[one], one, i + 1 end
    fail(line, "unexpected char '%s' at %d", one, i - 1)
end

------------------------------------------------------------------ the lexer

-- M.tokenize(source, opts) -> array of tokens. opts: trim_blocks,
-- lstrip_blocks, keep_trailing_newline (Hugging Face: true, true, false).
function M.tokenize(source, opts)
    opts = opts or {}
    local trim_blocks = opts.trim_blocks ~= false
    local lstrip_blocks = opts.lstrip_blocks ~= false

    local s = source:gsub("\r\n", "\n"):gsub("\r", "\n")
    if not opts.keep_trailing_newline and sub(s, -1) == "\n" then s = sub(s, 1, -2) end

    local tokens, ntok = {}, 0
    local function emit(type_, value, line)
        ntok = ntok + 1
        tokens[ntok] = { type = type_, value = value, line = line }
    end

    local n = #s
    local pos, line = 1, 1
    -- Did the previous tag's closing match end with a newline? lstrip_blocks
    -- treats the next tag as starting a line then (jinja2's line_starting).
    local line_starting = true

    -- Emits the text s[i..j] that precedes a tag, stripped as the tag asks.
    local function data_before(i, j, sign, lstrip_applies)
        local stripped_j = j
        if sign == "-" then
            stripped_j = rstrip_end(s, i, j)
        elseif sign ~= "+" and lstrip_blocks and lstrip_applies then
            local last_nl
            local p = find(s, "\n", i, true)
            while p and p <= j do last_nl = p; p = find(s, "\n", p + 1, true) end
            local l_pos = last_nl and last_nl + 1 or i
            if (last_nl or line_starting) and all_space(s, l_pos, j) then
                stripped_j = l_pos - 1
            end
        end
        if stripped_j >= i then emit("data", sub(s, i, stripped_j), line) end
        line = line + count_newlines(s, i, j)
    end

    -- After "%}" / "#}": "-" strips all following whitespace, "+" nothing,
    -- otherwise trim_blocks eats one newline. Returns the next index.
    local function after_close(i, sign)
        if sign == "-" then
            local j = skip_space(s, i)
            line_starting = j > i and byte(s, j - 1) == 10
            line = line + count_newlines(s, i, j - 1)
            return j
        elseif sign ~= "+" and trim_blocks and byte(s, i) == 10 then
            line_starting = true
            line = line + 1
            return i + 1
        end
        line_starting = false
        return i
    end

    while pos <= n do
        local t = find(s, "{[{%%#]", pos)
        if not t then
            emit("data", sub(s, pos), line)
            break
        end
        local kind = sub(s, t + 1, t + 1)
        local sign = sub(s, t + 2, t + 2)
        if sign ~= "-" and sign ~= "+" then sign = "" end
        local body = t + 2 + #sign

        -- {% raw %} ... {% endraw %}: the content is data, verbatim.
        local raw_close = kind == "%" and match(s, "^%s*raw%s*%-?%%}", body)
        if raw_close then
            data_before(pos, t - 1, sign, true)
            local after = body + #raw_close
            local j = after
            if sub(raw_close, -3, -3) == "-" then j = skip_space(s, after) end
            line = line + count_newlines(s, body, j - 1)
            line_starting = j > after and byte(s, j - 1) == 10
            local e = j
            local etag, esign, eclose
            while true do
                etag = find(s, "{%", e, true)
                if not etag then fail(line, "Missing end of raw directive") end
                esign = sub(s, etag + 2, etag + 2)
                if esign ~= "-" and esign ~= "+" then esign = "" end
                eclose = match(s, "^%s*endraw%s*[-+]?%%}", etag + 2 + #esign)
                if eclose then break end
                e = etag + 2
            end
            data_before(j, etag - 1, esign, true)
            local close_end = etag + 2 + #esign + #eclose
            line = line + count_newlines(s, etag, close_end - 1)
            local csign = sub(eclose, -3, -3)
            pos = after_close(close_end, (csign == "-" or csign == "+") and csign or "")
        elseif kind == "#" then
            data_before(pos, t - 1, sign, true)
            local e = find(s, "#}", body, true)
            if not e then fail(line, "Missing end of comment tag") end
            local csign = ""
            if e > body and (byte(s, e - 1) == 45 or byte(s, e - 1) == 43) then
                csign = sub(s, e - 1, e - 1)
            end
            line = line + count_newlines(s, t, e + 1)
            pos = after_close(e + 2, csign)
        else
            local is_block = kind == "%"
            data_before(pos, t - 1, sign, is_block)
            emit(is_block and "block_begin" or "variable_begin", nil, line)
            local i = body
            local balance = {}
            while true do
                if #balance == 0 then
                    local close
                    if is_block then
                        close = (sub(s, i, i + 2) == "-%}" and "-") or (sub(s, i, i + 2) == "+%}" and "+")
                            or (sub(s, i, i + 1) == "%}" and "")
                    else
                        close = (sub(s, i, i + 2) == "-}}" and "-") or (sub(s, i, i + 1) == "}}" and "")
                    end
                    if close then
                        emit(is_block and "block_end" or "variable_end", nil, line)
                        local after = i + 2 + #close
                        if is_block then
                            pos = after_close(after, close)
                        elseif close == "-" then
                            pos = after_close(after, "-")
                        else
                            line_starting = false
                            pos = after
                        end
                        break
                    end
                end
                if i > n then
                    fail(line, "unexpected end of template, expected '%s'", is_block and "%}" or "}}")
                end
                local ws = space_at(s, i)
                if ws then
                    local j = skip_space(s, i)
                    line = line + count_newlines(s, i, j - 1)
                    i = j
                else
                    local ttype, value, j = tag_token(s, i, line)
                    if CLOSERS[value] and ttype ~= "string" then
                        balance[#balance + 1] = CLOSERS[value]
                    elseif (value == "}" or value == ")" or value == "]") and ttype ~= "string" then
                        if #balance == 0 then fail(line, "unexpected '%s'", value) end
                        local want = table.remove(balance)
                        if want ~= value then fail(line, "unexpected '%s', expected '%s'", value, want) end
                    end
                    emit(ttype, value, line)
                    line = line + count_newlines(s, i, j - 1)
                    i = j
                end
            end
        end
    end
    emit("eof", nil, line)
    return tokens
end

return M
