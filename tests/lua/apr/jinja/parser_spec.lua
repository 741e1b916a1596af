-- parser_spec.lua — apr.jinja.parser: jinja2's precedence and statement
-- forms, and syntax errors.
local lexer = require "apr.jinja.lexer"
local parser = require "apr.jinja.parser"
local jinja = require "apr.jinja"

local known_filters, known_tests = {}, {}
for k in pairs(jinja.filters) do known_filters[k] = true end
for k in pairs(jinja.tests) do known_tests[k] = true end

local function parse(src)
    return parser.parse(lexer.tokenize(src), known_filters, known_tests)
end

-- The expression of `{{ src }}` as a compact string.
local function show(node)
    local t = node.type
    if t == "const" then return tostring(node.value) end
    if t == "name" then return node.name end
    if t == "binop" then return "(" .. show(node.left) .. " " .. node.op .. " " .. show(node.right) .. ")" end
    if t == "filter" then return show(node.node) .. "|" .. node.name end
    if t == "test" then return show(node.node) .. " is " .. node.name end
    if t == "neg" or t == "not" then return t .. "(" .. show(node.node) .. ")" end
    if t == "compare" then return "cmp(" .. show(node.expr) .. " " .. node.ops[1].op .. " " .. show(node.ops[1].expr) .. ")" end
    if t == "condexpr" then return "(" .. show(node.expr1) .. " if " .. show(node.test) .. " else " .. (node.expr2 and show(node.expr2) or "-") .. ")" end
    if t == "getattr" then return show(node.node) .. "." .. node.attr end
    if t == "concat" then return "concat" end
    return t
end

local function expr(src) return show(parse("{{ " .. src .. " }}")[1].expr) end

local function syntax_error(src)
    local ok, err = pcall(parse, src)
    assert.is_false(ok)
    assert.equal("syntax", err.kind)
    return err.message
end

describe("apr.jinja.parser", function()
    it("binds filters tighter than arithmetic, looser than unary minus", function()
        assert.equal("(a add b|trim)", expr("a + b|trim"))
        assert.equal("neg(x)|abs", expr("-x|abs"))
        assert.equal("((a add (b mul c)) sub d)", expr("a + b * c - d"))
        assert.equal("(a pow b)", expr("a ** b"))
    end)

    it("parses not, comparisons, tests and conditional expressions", function()
        assert.equal("not(cmp(a eq b))", expr("not a == b"))
        assert.equal("not(x is defined)", expr("x is not defined"))
        assert.equal("x is divisibleby", expr("x is divisibleby 3"))
        assert.equal("(a if b else (c if d else e))", expr("a if b else c if d else e"))
        assert.equal("(a if b else -)", expr("a if b"))
        assert.equal("cmp(a notin b)", expr("a not in b"))
        assert.equal("m.items", show(parse("{{ m.items() }}")[1].expr.node))
    end)

    it("parses statements", function()
        local f = parse("{% for k, v in d.items() if v recursive %}{{ k }}{% else %}e{% endfor %}")[1]
        assert.equal("for", f.type)
        assert.equal("tuple", f.target.type)
        assert.is_true(f.recursive)
        assert.equal("e", f.else_[1].value)
        local i = parse("{% if a %}1{% elif b %}2{% else %}3{% endif %}")[1]
        assert.equal("if", i.else_[1].type)
        local m = parse("{% macro m(a, b=1) %}{{ varargs }}{% endmacro %}")[1]
        assert.same({ "a", "b" }, m.params)
        assert.is_true(m.uses_varargs)
        assert.equal("nsref", parse("{% set ns.x = 1 %}")[1].target.type)
        assert.equal("set_block", parse("{% set x | upper %}y{% endset %}")[1].type)
    end)

    it("rejects what jinja2 rejects", function()
        assert.equal("Encountered unknown tag 'frob'.", syntax_error("{% frob %}"))
        assert.equal("'break' outside of a for loop", syntax_error("{% break %}"))
        assert.equal("'continue' outside of a for loop", syntax_error("{% for x in y %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}"))
        assert.equal("non-default argument follows default argument", syntax_error("{% macro m(a=1, b) %}{% endmacro %}"))
        assert.equal("No filter named 'nope'.", syntax_error("{{ x|nope }}"))
        assert.equal("You cannot chain multiple tests with is", syntax_error("{{ x is eq is y }}"))
        assert.truthy(syntax_error("{% if x %}"):find("expected 'elif' or 'else' or 'endif'", 1, true))
        assert.truthy(syntax_error("{{ " .. string.rep("(", 300) .. "1" .. string.rep(")", 300) .. " }}"):find("nested too deeply"))
    end)

    it("defers unknown filters inside if to run time, as jinja2 does", function()
        assert.has_no.errors(function() parse("{% if x %}{{ y|nope }}{% endif %}") end)
        assert.has_no.errors(function() parse("{{ 1 if x else y|nope }}") end)
        syntax_error("{% if x %}{% for i in y %}{{ i|nope }}{% endfor %}{% endif %}")
    end)
end)
