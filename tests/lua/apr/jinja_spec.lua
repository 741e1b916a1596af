-- jinja_spec.lua — apr.jinja: the template language, Python value
-- semantics, errors and limits, and agreement with python3-jinja2.
local jinja = require "apr.jinja"
local json = require "apr.json"
local oracle = require "tests.lua.apr.jinja_oracle"
local cases = require "tests.lua.apr.jinja_cases"

local function render(src, vars, opts)
    local text, msg = jinja.render(src, vars or {}, opts)
    assert(text, msg)
    return text
end

local function render_error(src, vars, opts)
    local text, msg, err = jinja.render(src, vars or {}, opts)
    assert(text == nil, "rendered " .. tostring(text))
    return msg, err
end

describe("apr.jinja language", function()
    it("prints values as Python's str() does", function()
        local v = assert(json.decode('{"d": {"b": [1, 2.0, null, true], "a": "x"}}'))
        assert.equal("{'b': [1, 2.0, None, True], 'a': 'x'}|None|False|1.5|3",
            render("{{ d }}|{{ none }}|{{ false }}|{{ 1.5 }}|{{ 3 }}", v))
        assert.equal("[\"it's\", 'say \"hi\"', 'a\\nb']", render([[{{ ["it's", 'say "hi"', 'a\nb'] }}]]))
        assert.equal("(1,) () (1, 'a')", render("{{ (1,) }} {{ () }} {{ (1, 'a') }}"))
    end)

    it("keeps Python's int and float arithmetic", function()
        assert.equal("3.5 3 -4 2 1.0 8 0.5 6.0 -0.0", render("{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 / 2 }} {{ 2 ** 3 }} {{ 2 ** -1 }} {{ 2 * 3.0 }} {{ -0.0 }}"))
        assert.equal("abab [1, 1] True True", render("{{ 'ab' * 2 }} {{ [1] * 2 }} {{ 1 == 1.0 }} {{ true == 1 }}"))
    end)

    it("indexes strings by code point and slices like Python", function()
        assert.equal("é|ö|olléh|hé|[3, 2, 1]|[1, 3]", render("{{ s[1] }}|{{ t[-1] }}|{{ s[::-1] }}|{{ s[:2] }}|{{ l[::-1] }}|{{ l[::2] }}",
            { s = "héllo", t = "wörtö", l = { 1, 2, 3 } }))
        assert.equal("5", render("{{ s | length }}", { s = "日本語👍🏽" }))
    end)

    it("runs loops with the loop object, filters, else, break and continue", function()
        assert.equal("1/3 2/3 3/3", render("{% for x in l %}{{ loop.index }}/{{ loop.length }}{{ ' ' if not loop.last }}{% endfor %}", { l = { "a", "b", "c" } }))
        assert.equal("2,3", render("{% for x in l if x > 1 %}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}", { l = { 1, 2, 3 } }))
        assert.equal("none", render("{% for x in l %}x{% else %}none{% endfor %}", { l = {} }))
        assert.equal("013", render("{% for i in range(9) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"))
        assert.equal("None>1>2|1>2>3|2>3>None|", render("{% for x in [1, 2, 3] %}{{ loop.previtem if loop.previtem is defined else 'None' }}>{{ x }}>{{ loop.nextitem if loop.nextitem is defined else 'None' }}|{% endfor %}"))
    end)

    it("scopes assignments as jinja2 does", function()
        -- a loop body starts afresh each iteration and leaks nothing; if does not scope
        assert.equal("2,3,after=1|set", render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }},{% endfor %}after={{ x }}|{% if true %}{% set y = 'set' %}{% endif %}{{ y }}"))
        -- a name the template assigns later is undefined in an earlier loop
        assert.equal("[]|1", render("{% for i in [1] %}[{{ x }}]{% endfor %}|{% set x = 1 %}{{ x }}", { x = 5 }))
        assert.equal("[5]", render("{% if false %}{% set x = 1 %}{% endif %}{% for i in [1] %}[{{ x }}]{% endfor %}", { x = 5 }))
        -- the else of a loop runs unless an iteration reached the end of the body
        assert.equal("else", render("{% for i in [1, 2] %}{% break %}{% else %}else{% endfor %}"))
        assert.equal("3", render("{% set ns = namespace(n=0) %}{% for i in [1, 2] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"))
    end)

    it("supports macros, call blocks, block set, filter blocks, with and raw", function()
        assert.equal("Hi bob! Hi amy?", render("{% macro greet(n, p='!') %}Hi {{ n }}{{ p }}{% endmacro %}{{ greet('bob') }} {{ greet('amy', p='?') }}"))
        assert.equal("[in]", render("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}in{% endcall %}"))
        assert.equal("HELLO 3", render("{% set b | upper %}hello{% endset %}{{ b }} {% with a = 1, c = 2 %}{{ a + c }}{% endwith %}"))
        assert.equal("{{ x }}", render("{% raw %}{{ x }}{% endraw %}"))
    end)

    it("applies trim_blocks, lstrip_blocks and whitespace control", function()
        assert.equal("a\n    yes\nb", render("a\n  {% if true %}\n    yes\n  {% endif %}\nb"))
        assert.equal("ab", render("a  {{- '' -}}  \n b"))
        assert.equal("x", render("x\n"))
        assert.equal("x\n", render("x\n", {}, { keep_trailing_newline = true }))
        assert.equal("a\n  b", render("a\n  {%+ if true %}\nb{% endif %}"))
    end)

    it("has Hugging Face's tojson (key order kept, no HTML escaping)", function()
        local v = assert(json.decode('{"z": {"b": 1.0, "a": [true, null]}, "s": "<é>&\'"}'))
        assert.equal('{"z": {"b": 1.0, "a": [true, null]}, "s": "<é>&\'"}', render("{{ v | tojson }}", { v = v }))
        assert.equal('{\n    "b": 1.0,\n    "a": [\n        true,\n        null\n    ]\n}', render("{{ v.z | tojson(indent=4) }}", { v = v }))
    end)

    it("treats undefined values as jinja2's default Undefined", function()
        assert.equal("[]|False|0|x|", render("[{{ nope }}]|{{ nope is defined }}|{{ nope | length }}|{{ nope | default('x') }}|{% for i in nope %}i{% endfor %}"))
        local msg, err = render_error("{{ nope.attr }}")
        assert.equal("line 1: 'nope' is undefined", msg)
        assert.equal("undefined", err.kind)
        msg = render_error("{{ m.content + 'x' }}", { m = { role = "user" } })
        assert.equal("line 1: 'dict object' has no attribute 'content'", msg)
        assert.equal("[]", render("[{{ m.content }}]", { m = { role = "user" } }))
    end)

    it("refuses to modify lists and dicts (immutable sandbox)", function()
        local msg, err = render_error("{{ l.append(1) }}", { l = { 1 } })
        assert.equal("security", err.kind)
        assert.truthy(msg:find("access to attribute 'append' of 'list' object is unsafe", 1, true))
    end)

    it("provides raise_exception, strftime_now, range, dict and namespace", function()
        local msg, err = render_error("\n\n{{ raise_exception('roles must alternate') }}")
        assert.equal("line 3: roles must alternate", msg)
        assert.equal("raise", err.kind)
        assert.equal("26 Jul 2024", render("{{ strftime_now('%d %b %Y') }}", {}, { now = os.time({ year = 2024, month = 7, day = 26, hour = 12 }) }))
        assert.equal("[0, 2, 4] {'a': 1} 5", render("{{ range(0, 6, 2) | list }} {{ dict(a=1) }} {{ namespace(x=5).x }}"))
    end)

    it("calls Lua functions passed as variables", function()
        assert.equal("7 None", render("{{ add(3, 4) }} {{ nothing() }}", {
            add = function(a, b) return a + b end, nothing = function() end,
        }))
    end)

    it("reports syntax errors with their line, never raising", function()
        local bad = {
            { "line1\n{% if x %}\nno end", "line 3: syntax error: unexpected end of template, expected 'elif' or 'else' or 'endif'" },
            { "{{ 1 + }}", "line 1: syntax error: unexpected 'end of print statement'" },
            { "\n{% frobnicate %}", "line 2: syntax error: Encountered unknown tag 'frobnicate'." },
            { "{{ x | nosuch }}", "line 1: syntax error: No filter named 'nosuch'." },
            { "{% include 'x' %}", "line 1: syntax error: the 'include' tag is not supported" },
            { "{# open", "line 1: syntax error: Missing end of comment tag" },
            { "{{ (1, 2] }}", "line 1: syntax error: unexpected ']', expected ')'" },
            { "{% break %}", "line 1: syntax error: 'break' outside of a for loop" },
        }
        for _, b in ipairs(bad) do
            local ok, tmpl, msg, err = pcall(jinja.compile, b[1])
            assert.is_true(ok)
            assert.is_nil(tmpl)
            assert.equal(b[2], msg)
            assert.equal("syntax", err.kind)
        end
    end)

    it("bounds output, loops and recursion", function()
        local msg, err = render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
        assert.equal("limit", err.kind)
        assert.truthy(msg:find("loop iterations"))
        _, err = render_error("{{ 'x' * 100000000 }}")
        assert.equal("limit", err.kind)
        _, err = render_error("{% for i in range(1000) %}{{ 'y' * 10000 }}{% endfor %}", {}, { max_output = 1000000 })
        assert.equal("limit", err.kind)
        _, err = render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        assert.equal("limit", err.kind)
        _, err = render_error("{{ range(100001) }}")
        assert.equal("overflow", err.kind)
        _, err = render_error("{{ " .. string.rep("(", 500) .. "1" .. string.rep(")", 500) .. " }}")
        assert.equal("syntax", err.kind)
    end)

    it("reports bad variables cleanly", function()
        local cyclic = {}
        cyclic.self = cyclic
        local msg = render_error("{{ x }}", { x = cyclic })
        assert.truthy(msg:find("nested too deeply"))
        assert.has_error(function() jinja.compile(42) end)
    end)

    it("compiles a template once per source", function()
        local src = "{{ x }} cached"
        assert.equal("1 cached", render(src, { x = 1 }))
        local t1 = jinja.compile(src)
        assert.equal("2 cached", t1:render({ x = 2 }))
        assert.equal("3 cached", render(src, { x = 3 }))
    end)
end)

describe("apr.jinja against python3-jinja2", function()
    it("renders every feature snippet the same (or fails the same way)", function()
        if not oracle.available() then return pending("python3-jinja2 not installed (make deps)") end
        local list = {}
        for i, t in ipairs(cases.snippets) do
            list[i] = { template = t, vars = cases.vars, now = 1700000000 }
        end
        assert.is_true(#list >= 150)
        local mismatches = oracle.compare(list)
        assert.equal("", table.concat(mismatches, "\n\n"))
    end)

    it("agrees on 2000 seeded random expressions", function()
        if not oracle.available() then return pending("python3-jinja2 not installed (make deps)") end
        math.randomseed(1234)
        local list = {}
        for i = 1, 2000 do
            list[i] = { template = "{{ " .. cases.random_expression() .. " }}", vars = cases.expression_vars }
        end
        assert.equal("", table.concat(oracle.compare(list), "\n\n"))
    end)

    it("agrees on 1000 seeded random templates (blocks, scoping, whitespace control)", function()
        if not oracle.available() then return pending("python3-jinja2 not installed (make deps)") end
        math.randomseed(5678)
        local list = {}
        for i = 1, 1000 do
            list[i] = { template = cases.random_template(), vars = cases.template_vars }
        end
        assert.equal("", table.concat(oracle.compare(list), "\n\n"))
    end)
end)
