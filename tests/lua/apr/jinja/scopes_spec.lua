-- scopes_spec.lua — apr.jinja.scopes: which names start out undefined in
-- each frame, as jinja2's compile-time analysis decides.
local lexer = require "apr.jinja.lexer"
local parser = require "apr.jinja.parser"
local scopes = require "apr.jinja.scopes"
local jinja = require "apr.jinja"

local function analyze(src)
    local f, t = {}, {}
    for k in pairs(jinja.filters) do f[k] = true end
    for k in pairs(jinja.tests) do t[k] = true end
    return scopes.analyze(parser.parse(lexer.tokenize(src), f, t))
end

describe("apr.jinja.scopes", function()
    it("marks names a frame assigns before any read", function()
        assert.same({ "x" }, analyze("{% for i in l %}{{ x }}{% endfor %}{% set x = 1 %}").undefined)
        assert.same({}, analyze("{{ x }}{% set x = 1 %}").undefined)
        assert.same({}, analyze("{% set messages = messages[1:] %}").undefined)
    end)

    it("treats names only some if branches assign as read from outside", function()
        assert.same({}, analyze("{% if c %}{% set x = 1 %}{% endif %}").undefined)
        assert.same({ "x" }, analyze("{% if c %}{% set x = 1 %}{% else %}{% set x = 2 %}{% endif %}").undefined)
    end)

    it("analyzes nested frames against their parents", function()
        local body = analyze("{% set y = 1 %}{% for i in l %}{% set y = 2 %}{% set z = 3 %}{% endfor %}")
        assert.same({ "y" }, body.undefined)
        assert.same({ "z" }, body[2].body_undefined, "y aliases the outer y; z is new")
        local m = analyze("{% macro m(a) %}{% set b = a %}{% endmacro %}")[1]
        assert.same({ "b" }, m.undefined)
    end)
end)
