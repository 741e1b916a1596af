-- value_spec.lua — apr.jinja.value: Python's semantics over Lua values.
local V = require "apr.jinja.value"
local json = require "apr.json"

local function dec(s)
    local v, err = json.decode(s)
    assert(err == nil, err)
    return v
end

describe("apr.jinja.value", function()
    it("names Python types", function()
        assert.same({ "none", "bool", "int", "float", "float", "str", "list", "dict", "tuple", "undefined" },
            { V.kind(V.null), V.kind(true), V.kind(3), V.kind(0.5), V.kind(json.float(2)), V.kind("s"),
              V.kind({ 1 }), V.kind({ a = 1 }), V.kind(V.tuple({})), V.kind(V.undefined("x")) })
        assert.equal("NoneType", V.type_name(V.null))
        assert.equal("dict object", V.object_type_repr(dec("{}")))
    end)

    it("prints str() and repr() as Python does", function()
        assert.equal("{'a': [1, 2.0, None, True, 'x']}", V.str(dec('{"a": [1, 2.0, null, true, "x"]}')))
        assert.equal([["it's"]], V.repr("it's"))
        assert.equal([['say "hi"']], V.repr('say "hi"'))
        assert.equal([['\n\t\\ \x00 \u200b é']], V.repr("\n\t\\ \0 \u{200B} é"))
        assert.equal("(1,)", V.str(V.tuple({ 1 })))
        assert.equal("", V.str(V.undefined("x")))
        assert.equal("1e+16 -0.0 0.1", V.str(1e16) .. " " .. V.str(json.float(-0.0)) .. " " .. V.str(0.1))
    end)

    it("compares like Python", function()
        assert.is_true(V.eq(1, json.float(1)))
        assert.is_true(V.eq(true, 1))
        assert.is_false(V.eq(V.tuple({ 1 }), { 1 }))
        assert.is_true(V.eq(dec('{"a": 1, "b": 2}'), dec('{"b": 2, "a": 1}')))
        assert.is_true(V.compare("lt", { 1, 2 }, { 1, 3 }))
        assert.is_true(V.compare("lt", "B", "a"))
        local ok, err = pcall(V.compare, "lt", "a", 1)
        assert.is_false(ok)
        assert.equal("'<' not supported between instances of 'str' and 'int'", err.message)
    end)

    it("does Python arithmetic", function()
        local function s(op, a, b) return V.str(V.arith(op, a, b)) end
        assert.same({ "3.5", "3", "-4", "2", "-1", "1.0", "2.0", "0.5", "abab" },
            { s("div", 7, 2), s("floordiv", 7, 2), s("floordiv", -7, 2), s("mod", -7, 3), s("mod", 7, -4),
              s("mod", 1e20, 3), s("floordiv", 5, 2.5), s("pow", 2, -1), s("mul", "ab", 2) })
        local ok, err = pcall(V.arith, "add", "a", 1)
        assert.is_false(ok)
        assert.equal('can only concatenate str (not "int") to str', err.message)
        ok, err = pcall(V.arith, "div", 1, 0)
        assert.equal("zero_division", err.kind)
    end)

    it("slices and indexes by code point", function()
        assert.equal("olléh", V.slice("héllo", nil, nil, -1))
        assert.equal("[2, 3]", V.str(V.slice({ 1, 2, 3 }, -2)))
        assert.equal("[3, 1]", V.str(V.slice({ 1, 2, 3 }, nil, nil, -2)))
        assert.equal(5, V.length("日本語👍🏽"))
        assert.is_true(V.contains("日本語", "本"))
        assert.is_true(V.contains(dec('{"a": 1}'), "a"))
        assert.is_false(V.contains(V.undefined("x"), "a"))
    end)

    it("keeps Undefined's rules", function()
        local u = V.undefined("x")
        assert.is_false(V.truth(u))
        assert.same({}, V.iterate(u))
        assert.equal(0, V.length(u))
        local ok, err = pcall(V.arith, "add", u, 1)
        assert.is_false(ok)
        assert.equal("'x' is undefined", err.message)
    end)

    it("escapes what is added to Markup", function()
        assert.equal("<b>&lt;i&gt;", V.str(V.arith("add", V.markup("<b>"), "<i>")))
        assert.equal("&lt;i&gt;<b>", V.str(V.arith("add", "<i>", V.markup("<b>"))))
    end)
end)
