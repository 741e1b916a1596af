-- lexer_spec.lua — apr.jinja.lexer: tokens, line numbers and jinja2's
-- whitespace rules.
local lexer = require "apr.jinja.lexer"

local function types(src)
    local out = {}
    for _, t in ipairs(lexer.tokenize(src)) do out[#out + 1] = t.type end
    return table.concat(out, " ")
end

local function data(src, opts)
    local out = {}
    for _, t in ipairs(lexer.tokenize(src, opts)) do
        if t.type == "data" then out[#out + 1] = t.value end
    end
    return table.concat(out, "|")
end

local function fails(src)
    local ok, err = pcall(lexer.tokenize, src)
    assert.is_false(ok)
    assert.equal("syntax", err.kind)
    return err
end

describe("apr.jinja.lexer", function()
    it("tokenizes tags", function()
        assert.equal("data variable_begin name dot name pipe name lparen integer comma string rparen variable_end eof",
            types("x{{ a.b|f(1, 'x') }}"))
        assert.equal("block_begin name name name name block_end eof", types("{% for x in y %}"))
        assert.equal("variable_begin name floordiv integer pow integer ne float variable_end eof", types("{{ a // 2 ** 3 != 1.5 }}"))
    end)

    it("reads numbers and strings as Python does", function()
        local t = lexer.tokenize("{{ 1_000 0x1f 0o17 0b11 1e3 2.5 'a\\n\\x41\\u00e9\\d' \"q\\\"\" }}")
        assert.same({ 1000, 31, 15, 3, 1000, 2.5, "a\nAé\\d", 'q"' },
            { t[2].value, t[3].value, t[4].value, t[5].value, t[6].value, t[7].value, t[8].value, t[9].value })
        assert.equal("float", t[6].type)
        assert.equal("integer", t[2].type)
    end)

    it("counts lines through data, tags, strings and comments", function()
        local t = lexer.tokenize("a\n{# c\n #}\n{{\n x\n }}\n{% if\n'p\nq' %}")
        local lines = {}
        for _, tok in ipairs(t) do if tok.type == "name" or tok.type == "string" then lines[#lines + 1] = tok.line end end
        assert.same({ 5, 7, 8 }, lines)
    end)

    it("applies trim_blocks, lstrip_blocks and the - and + markers", function()
        assert.equal("a\n|    b\n|c", data("a\n  {% if x %}\n    b\n  {% endif %}\nc"))
        assert.equal("a\n  |\n    b\n  |\nc", data("a\n  {% if x %}\n    b\n  {% endif %}\nc", { trim_blocks = false, lstrip_blocks = false }))
        assert.equal("a|b", data("a \u{3000}\n {%- if x -%} \n\u{A0}b"))
        assert.equal("a\n  |\nb", data("a\n  {%+ if x +%}\nb"))
        assert.equal("a\n  |b", data("a\n  {{ x }}b"), "no lstrip before {{")
        assert.equal("x", data("x\n"))
        assert.equal("x\n", data("x\r\n", { keep_trailing_newline = true }))
    end)

    it("keeps raw blocks verbatim", function()
        assert.equal("{{ x }}{% y %}", data("{% raw %}{{ x }}{% y %}{% endraw %}"))
        assert.equal("a", data("{%- raw -%}  a  {%- endraw -%}"))
    end)

    it("matches brackets before a tag may close", function()
        assert.equal("variable_begin lbrace string colon lbrace string colon integer rbrace rbrace variable_end eof",
            types("{{ {'a': {'b': 1}}}}"))
        fails("{{ (1, 2] }}")
        fails("{{ ) }}")
    end)

    it("reports malformed tags", function()
        assert.equal("Missing end of comment tag", fails("{# x").message)
        assert.equal("Missing end of raw directive", fails("{% raw %}x").message)
        assert.truthy(fails("{{ 'open }}").message:find("unexpected char"))
        assert.truthy(fails("{{ x").message:find("unexpected end of template"))
        assert.equal(3, fails("\n\n{{ @ }}").line)
    end)
end)
