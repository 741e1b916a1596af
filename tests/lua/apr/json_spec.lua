-- json_spec.lua — apr.json: order-preserving decoding with Python's number
-- types, an encoder equal to Python's json.dumps, strictness on bad input.
local json = require "apr.json"
local h = require "tests.lua.helpers"

local PYTHON = "/usr/bin/python3"

local function python_available()
    local ok = os.execute(PYTHON .. " -c 'import json' 2>/dev/null")
    return ok == 0 or ok == true
end

-- Runs a Python program with `data` (a string) on stdin; returns stdout.
local function python(program, data)
    local dir = h.tmpdir()
    local prog, input, output = dir .. "/p.py", dir .. "/in", dir .. "/out"
    local f = assert(io.open(prog, "wb")); f:write(program); f:close()
    f = assert(io.open(input, "wb")); f:write(data); f:close()
    local ok = os.execute(string.format("%s %s < %s > %s", PYTHON, prog, input, output))
    local out = h.read_file(output)
    h.rmtree(dir)
    assert(ok == 0 or ok == true, "python failed")
    return out
end

local function dec(s)
    local v, err = json.decode(s)
    assert(err == nil, err)
    return v
end

describe("apr.json decode", function()
    it("keeps object key order, first position for repeated keys", function()
        local o = dec('{"z": 1, "a": 2, "m": 3, "a": 4}')
        assert.same({ "z", "a", "m" }, json.keys(o))
        assert.equal(4, o.a)
        assert.equal('{"z": 1, "a": 4, "m": 3}', json.encode(o))
    end)

    it("tells arrays from objects, empty ones included", function()
        local v = dec('{"a": [], "o": {}, "n": [[], {}]}')
        assert.is_true(json.is_array(v.a))
        assert.is_true(json.is_object(v.o))
        assert.equal('{"a": [], "o": {}, "n": [[], {}]}', json.encode(v))
    end)

    it("keeps null distinct from a missing key", function()
        local v = dec('{"a": null}')
        assert.equal(json.null, v.a)
        assert.is_nil(v.b)
        assert.equal("null", json.kind(v.a))
    end)

    it("keeps Python's int/float distinction", function()
        local v = dec('[1, 1.0, -0, -0.0, 1e2, 1.5, 12345678901234567890, 3E-2, 1e400]')
        assert.equal("int", json.kind(v[1]))
        assert.equal("float", json.kind(v[2]))
        assert.equal("int", json.kind(v[3]))
        assert.equal("float", json.kind(v[4]))
        assert.equal("float", json.kind(v[5]))
        assert.equal(1.5, v[6])
        assert.equal("int", json.kind(v[7]))
        assert.equal("12345678901234567890", tostring(v[7]))
        assert.equal(0.03, v[8])
        assert.equal('[1, 1.0, 0, -0.0, 100.0, 1.5, 12345678901234567890, 0.03, Infinity]', json.encode(v))
    end)

    it("gives plain Lua numbers when asked", function()
        local v = assert(json.decode('[1.0, 2e3, 12345678901234567890]', { plain_numbers = true }))
        assert.equal(1, v[1])
        assert.equal(2000, v[2])
        assert.equal("number", type(v[3]))
    end)

    it("decodes escapes and surrogate pairs", function()
        assert.equal('a"\\/\b\f\n\r\t\0', dec('"a\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000"'))
        assert.equal("é😀", dec('"\\u00e9\\ud83d\\ude00"'))
        assert.equal("日本", dec('"日本"'))
    end)

    it("keeps, replaces or rejects lone surrogates as asked", function()
        assert.equal("\237\160\128x", dec('"\\ud800x"'))
        assert.equal("\239\191\189", assert(json.decode('"\\udc00"', { lone_surrogates = "replace" })))
        local v, err = json.decode('"\\ud800"', { lone_surrogates = "error" })
        assert.is_nil(v)
        assert.truthy(err:find("surrogate"))
    end)

    it("skips a UTF-8 BOM and surrounding whitespace", function()
        assert.equal(5, dec("\239\187\191 \t\n 5 \r\n"))
    end)

    it("rejects bad documents with a position, never raising", function()
        local bad = {
            "", " ", "[", "]", "{", "}", "[1,]", "[1 2]", '{"a" 1}', '{"a": 1,}', "{a: 1}", "{'a': 1}",
            '"abc', '"a\\x"', '"\\u12"', '"\\uZZZZ"', '"tab\there"', '"nl\nx"', "01", "1.", ".5", "-",
            "+1", "1e", "1e+", "0x10", "tru", "nul", "NaN", "Infinity", "-Infinity", "[1]x", "1 2",
            "\255", '"\192\128"', '"\237\160\128"', '"\244\144\128\128"', '"\226\130"', "[\"a\"\n,\n}",
        }
        for _, s in ipairs(bad) do
            local ok, v, err = pcall(json.decode, s)
            assert.is_true(ok, "decode raised on " .. s)
            assert.is_nil(v, "accepted " .. s)
            assert.is_string(err)
            assert.truthy(err:find("byte %d+") or err:find("UTF%-8"), err)
        end
        local _, err = json.decode('{"a": [1, 2,, 3]}')
        assert.equal("Expecting value: line 1 column 13 (byte 12)", err)
    end)

    it("accepts NaN and Infinity only when allowed", function()
        local v = assert(json.decode("[NaN, Infinity, -Infinity]", { allow_nan = true }))
        assert.is_true(v[1] ~= v[1])
        assert.equal(math.huge, v[2])
        assert.equal("[NaN, Infinity, -Infinity]", json.encode(v))
    end)

    it("limits nesting depth instead of overflowing the stack", function()
        local deep = string.rep("[", 100000) .. string.rep("]", 100000)
        local v, err = json.decode(deep)
        assert.is_nil(v)
        assert.truthy(err:find("Nesting deeper than 512"))
        assert.is_truthy(json.decode(string.rep("[", 512) .. string.rep("]", 512)))
        assert.is_truthy(json.decode(string.rep("[", 600) .. string.rep("]", 600), { max_depth = 1000 }))
    end)

    it("raises for a non-string argument", function()
        assert.has_error(function() json.decode(42) end)
    end)
end)

describe("apr.json encode", function()
    it("formats like Python's json.dumps", function()
        local v = dec('{"b": [1, 2.5, true, null], "a": {"x": "y"}, "e": [], "o": {}}')
        assert.equal('{"b": [1, 2.5, true, null], "a": {"x": "y"}, "e": [], "o": {}}', json.encode(v))
        assert.equal('{\n  "b": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  "a": {\n    "x": "y"\n  },\n  "e": [],\n  "o": {}\n}',
            json.encode(v, { indent = 2 }))
        assert.equal('{"b":[1,2.5,true,null],"a":{"x":"y"},"e":[],"o":{}}', json.encode(v, { separators = { ",", ":" } }))
        assert.equal('{"a": {"x": "y"}, "b": [1, 2.5, true, null], "e": [], "o": {}}', json.encode(v, { sort_keys = true }))
        assert.equal('[\n1,\n2\n]', json.encode(json.array({ 1, 2 }), { indent = 0 }))
        assert.equal('[\n\t1\n]', json.encode(json.array({ 1 }), { indent = "\t" }))
    end)

    it("escapes strings as Python does, ensure_ascii off by default", function()
        assert.equal('"a\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\127é日😀"', json.encode('a"b\\c\n\r\t\b\f\1\31\127é日😀'))
        assert.equal('"\\u00e9\\u65e5\\ud83d\\ude00"', json.encode("é日😀", { ensure_ascii = true }))
        assert.equal('"</script>&\'"', json.encode("</script>&'"))
    end)

    it("prints floats as Python's repr", function()
        local cases = {
            { 1.0, "1.0" }, { 0.1, "0.1" }, { 1e16, "1e+16" }, { 1e15, "1000000000000000.0" },
            { 1.5e-5, "1.5e-05" }, { 0.0001, "0.0001" }, { -0.0, "-0.0" }, { 1 / 3, "0.3333333333333333" },
            { 123456789.125, "123456789.125" }, { 1e100, "1e+100" }, { 5e-324, "5e-324" },
            { 1.7976931348623157e308, "1.7976931348623157e+308" }, { 2 ^ 60, "1.152921504606847e+18" },
        }
        for _, c in ipairs(cases) do
            assert.equal(c[2], json.float_repr(c[1]))
        end
        assert.equal("[1.0, 2, 0.5]", json.encode(json.array({ json.float(1), 2, 0.5 })))
    end)

    it("encodes plain Lua tables: 1..n as arrays, the rest as sorted objects", function()
        assert.equal('[1, 2, 3]', json.encode({ 1, 2, 3 }))
        assert.equal('{}', json.encode({}))
        assert.equal('{"1": "a", "3": "b", "x": true}', json.encode({ [1] = "a", [3] = "b", x = true }))
    end)

    it("keeps insertion order of objects built in Lua", function()
        local o = json.object()
        o.zeta = 1
        o.alpha = json.array({})
        o.mid = json.object()
        o.zeta = 2
        assert.equal('{"zeta": 2, "alpha": [], "mid": {}}', json.encode(o))
        o.alpha = nil
        assert.equal('{"zeta": 2, "mid": {}}', json.encode(o))
    end)

    it("reports values it cannot encode", function()
        local v, err = json.encode({ f = print })
        assert.is_nil(v)
        assert.truthy(err:find("not JSON serializable"))
        v, err = json.encode(0 / 0, { allow_nan = false })
        assert.is_nil(v)
        assert.truthy(err:find("not JSON compliant"))
        local cyclic = {}
        cyclic[1] = cyclic
        v, err = json.encode(cyclic)
        assert.is_nil(v)
        assert.truthy(err:find("Nesting deeper"))
    end)
end)

describe("apr.json against Python's json module", function()
    -- Seeded random JSON values covering every kind and awkward strings.
    local STRINGS = { "", "a", "héllo", "日本語", "😀👍🏽", "مرحبا", 'q"uo\'te', "back\\slash", "nl\nand\ttab",
        "\1\2\31", "\127", "</x>&", "e\u{301}", "\u{2028}\u{2029}", "nbsp\u{A0}" }
    local function random_value(depth)
        local r = math.random(depth > 3 and 6 or 9)
        if r == 1 then return STRINGS[math.random(#STRINGS)]
        elseif r == 2 then return math.random(-1000000, 1000000)
        elseif r == 3 then
            local x = (math.random() - 0.5) * 10 ^ math.random(-30, 30)
            return math.random(4) == 1 and json.float(math.floor(x)) or x
        elseif r == 4 then return math.random(2) == 1
        elseif r == 5 then return json.null
        elseif r == 6 then return json.bigint(tostring(math.random(1, 9)) .. string.rep("7", math.random(16, 30)))
        elseif r == 7 or r == 8 then
            local a = json.array()
            for i = 1, math.random(0, 4) do a[i] = random_value(depth + 1) end
            return a
        end
        local o = json.object()
        for _ = 1, math.random(0, 4) do o[STRINGS[math.random(#STRINGS)] .. math.random(9)] = random_value(depth + 1) end
        return o
    end

    it("round-trips random documents to the same text as json.loads + json.dumps", function()
        if not python_available() then return pending("python3 not found") end
        math.randomseed(20240726)
        local docs = {}
        for i = 1, 300 do docs[i] = assert(json.encode(random_value(0))) end
        local configs = {
            { py = "ensure_ascii=False", lua = {} },
            { py = "ensure_ascii=False, indent=2", lua = { indent = 2 } },
            { py = "ensure_ascii=True, sort_keys=True", lua = { ensure_ascii = true, sort_keys = true } },
            { py = "ensure_ascii=False, separators=(',', ':'), indent='\\t'", lua = { separators = { ",", ":" }, indent = "\t" } },
        }
        for _, c in ipairs(configs) do
            local out = python(string.format([[
import json, sys
for line in sys.stdin.buffer.read().decode("utf-8").split("\n\0\n"):
    sys.stdout.buffer.write((json.dumps(json.loads(line), %s) + "\n\0\n").encode("utf-8"))
]], c.py), table.concat(docs, "\n\0\n"))
            local i = 0
            for want in out:gmatch("(.-)\n%z\n") do
                i = i + 1
                local got = json.encode(dec(docs[i]), c.lua)
                assert.equal(want, got, "document " .. i .. " with " .. c.py)
            end
            assert.equal(#docs, i)
        end
    end)

    it("prints random doubles exactly as Python's repr", function()
        if not python_available() then return pending("python3 not found") end
        math.randomseed(77)
        local xs = {}
        for i = 1, 2000 do
            local x
            local r = i % 4
            if r == 0 then x = (math.random() - 0.5) * 10 ^ math.random(-320, 308)
            elseif r == 1 then x = math.random(-100000, 100000) / 2 ^ math.random(0, 20)
            elseif r == 2 then x = math.random() * 2 ^ math.random(-60, 70)
            else x = math.floor(math.random() * 1e6) / 10 ^ math.random(0, 8) end
            xs[i] = x
        end
        local lines = {}
        for i, x in ipairs(xs) do lines[i] = string.format("%a", x) end
        local out = python("import sys\nfor l in sys.stdin.read().split():\n    print(repr(float.fromhex(l)))\n",
            table.concat(lines, "\n"))
        local i = 0
        for want in out:gmatch("[^\n]+") do
            i = i + 1
            assert.equal(want, json.float_repr(xs[i]), lines[i])
        end
        assert.equal(#xs, i)
    end)

    it("rejects exactly what Python rejects (apart from NaN, Infinity)", function()
        if not python_available() then return pending("python3 not found") end
        local docs = { "[1,]", "01", "1.", "[1 2]", '{"a":1,}', '"\\x"', '" \t"', "1e5", "-0", "[]", "{}", '"\\ud800"',
            "  true  ", "nulll", "[1e999]", '{"a":{"b":[{}]}}', "0.000", "-1.5E+3", '"\\/"' }
        local out = python([[
import json, sys
for line in sys.stdin.buffer.read().decode("utf-8").split("\n\0\n"):
    try:
        json.loads(line.encode("utf-8"))
        print("ok")
    except ValueError:
        print("error")
]], table.concat(docs, "\n\0\n"))
        local i = 0
        for verdict in out:gmatch("[^\n]+") do
            i = i + 1
            local v = json.decode(docs[i])
            assert.equal(verdict, v ~= nil and "ok" or "error", docs[i])
        end
        assert.equal(#docs, i)
    end)
end)

describe("apr.json fuzz", function()
    it("answers every mutated document with a value or a message, quickly", function()
        math.randomseed(4242)
        local seeds = {
            '{"a": [1, 2.5, {"b": null}], "c": "d\\u00e9\\ud83d\\ude00", "e": true}',
            '[[], {}, "", 0, -0.0, 1e10, 12345678901234567890123]',
            '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}',
        }
        local alphabet = '{}[]",:\\0123456789.eE+-truefalsnl \t\n\255\128\192\237\160u'
        local t0 = os.clock()
        for n = 1, 20000 do
            local s = seeds[n % #seeds + 1]
            for _ = 1, math.random(1, 4) do
                local pos = math.random(1, #s + 1)
                local op = math.random(3)
                local ch = string.char(alphabet:byte(math.random(#alphabet)))
                if op == 1 then s = s:sub(1, pos - 1) .. ch .. s:sub(pos)
                elseif op == 2 then s = s:sub(1, pos - 1) .. s:sub(pos + 1)
                else s = s:sub(1, pos - 1) .. ch .. s:sub(pos + 1) end
            end
            local ok, v, err = pcall(json.decode, s)
            assert.is_true(ok, "decode raised on " .. s .. ": " .. tostring(v))
            if v == nil then
                assert.is_string(err)
            else
                -- whatever decodes must encode and decode back to the same
                -- text (1e999 decodes to inf, which encodes as Infinity)
                local text = assert(json.encode(v))
                local again, err2 = json.decode(text, { allow_nan = true })
                assert.is_nil(err2)
                assert.equal(text, json.encode(again))
            end
        end
        assert.is_true(os.clock() - t0 < 20, "fuzzing took too long")
    end)
end)
