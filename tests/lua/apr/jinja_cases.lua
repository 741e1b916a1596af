-- jinja_cases.lua — template snippets that exercise one Jinja feature each,
-- with the variables they read. jinja_spec renders them with apr.jinja and
-- with python3-jinja2 and requires the same text (or both failing alike);
-- jinja_fuzz_spec mutates them.
local json = require "apr.json"

local function J(s) return assert(json.decode(s)) end

local vars = J[==[{"s": "Hello, World", "n": 42, "f": 1.5, "fi": 2.0, "neg": -3, "z": 0, "t": true, "no": false, "nul": null,
 "l": [3, 1, 2], "e": [], "d": {"b": 2, "a": 1, "c": [1, {"x": "y"}]}, "ed": {}, "u": "héllo wörld ✓ 日本語",
 "ws": "  \t padded \n ", "cjk": "　全角　", "users": [{"name": "bob", "age": 30, "tags": ["a"]}, {"name": "Alice", "age": 25}, {"name": "carol", "age": 30, "x": null}],
 "msgs": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1, "b": [true, null, 1.0]}}}]}, {"role": "tool", "content": "42"}],
 "big": 12345678901234567890, "exp": 1e25, "small": 1e-7, "strs": ["b", "A", "c", "a"], "mixed": [1, 2.5, true], "nested": [[1, 2], [3, 4]]}]==]
local M = { vars = vars, snippets = {
 -- output and literals
 "{{ s }}|{{ n }}|{{ f }}|{{ fi }}|{{ neg }}|{{ t }}|{{ no }}|{{ nul }}|{{ l }}|{{ d }}|{{ e }}|{{ ed }}",
 "{{ big }} {{ exp }} {{ small }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 10/2 }} {{ 2**-1 }} {{ 2**0.5 }}",
 "{{ 'a\\nb' }}|{{ \"q\\\"uote\" }}|{{ 'tab\\there' }}|{{ '\\x41\\u00e9\\U0001F600' }}|{{ 'back\\\\slash' }}|{{ 'unk\\d' }}",
 "{{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1e3 }} {{ 1.5e-3 }} {{ 007 if false else 'x' }}",
 "{{ (1, 2) }} {{ (1,) }} {{ () }} {{ [1, (2, 3)] }} {{ {'k': (1,)} }}",
 "{{ 'it''s' }} {{ \"a\" 'b' }} {{ [\"it's\", 'say \"hi\"', 'both \\' \"'] }}",
 "{{ ['é', '\\n', '\\x00', '\\u200b', '日本', '\\t'] }}",
 "{{ -0.0 }} {{ 0 * -1 }} {{ -n }} {{ +neg }} {{ -f }} {{ 7 % -3 }} {{ -7.5 % 2 }} {{ 7 // -2 }} {{ 7.0 // 2 }}",
 "{{ 1 == 1.0 }} {{ true == 1 }} {{ [1,2] == [1,2] }} {{ (1,2) == [1,2] }} {{ d == {'a': 1, 'b': 2, 'c': [1, {'x': 'y'}]} }} {{ none == none }} {{ undefined_x == undefined_y }}",
 "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 'B' < 'a' }} {{ 2 >= 2.0 }}",
 "{{ 'ell' in s }} {{ 5 in l }} {{ 3 in l }} {{ 'b' in d }} {{ 'z' not in d }} {{ 'x' in e }} {{ 1 in [1.0] }}",
 "{{ a or 'def' }}|{{ s and n }}|{{ e or ed or 'both empty' }}|{{ not e }}|{{ 0 or none }}|{{ '' and 1 }}",
 "{{ 'yes' if t else 'no' }} {{ 'yes' if no else 'no' }} {{ 'x' if no }}|{{ 1 if no else 2 if t else 3 }}",
 "{{ s ~ n ~ f ~ nul ~ t ~ undefined_thing ~ l }}",
 "{{ 'ab' * 3 }} {{ 3 * 'ab' }} {{ [1] * 3 }} {{ l + [9] }} {{ s + '!' }} {{ 'x' * 0 }} {{ 'x' * -2 }}",
 -- subscripts and slicing
 "{{ l[0] }} {{ l[-1] }} {{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ l[5:] }} {{ l[-10:2] }} {{ s[0] }} {{ s[-5:] }} {{ s[::-1] }} {{ u[1:4] }} {{ u[::-2] }}",
 "{{ d.a }} {{ d['b'] }} {{ d.c[1].x }} {{ d['c'][1]['x'] }} {{ l.0 }} {{ d.missing }}|{{ l[10] }}|{{ nested[1][0] }}",
 "{{ d.items() }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }}",
 "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
 "{{ d.items is defined }} {{ d.items() | list }} {{ d.items() | length }} {{ ('a', 1) in d.items() }} {{ d.keys() is sequence }}",
 -- string methods
 "{{ ws.strip() }}|{{ ws.lstrip() }}|{{ ws.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ cjk.strip() }}|{{ cjk | trim }}|{{ ws | trim }}",
 "{{ s.split(', ') }} {{ 'a  b \\t c'.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ '  a b  '.split(None, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split() }} {{ ''.split(',') }}",
 "{{ s.startswith('Hell') }} {{ s.endswith('ld') }} {{ s.startswith(('x', 'H')) }} {{ s.upper() }} {{ s.lower() }} {{ u.upper() }} {{ s.replace('l', 'L') }} {{ s.replace('l', '', 2) }} {{ 'abc'.replace('', '-') }}",
 "{{ s.find('o') }} {{ s.rfind('o') }} {{ u.find('✓') }} {{ s.count('l') }} {{ s.index('W') }} {{ '-'.join(['a', 'b']) }} {{ s.title() }} {{ 'hELLO wORLD'.capitalize() }} {{ 'ab'.center(7, '*') }} {{ '5'.zfill(3) }} {{ 'x'.ljust(3) }}|{{ 'x'.rjust(3) }}",
 "{{ 'a\\nb\\r\\nc'.splitlines() }} {{ 'abc'.isalpha() }} {{ '123'.isdigit() }} {{ 'ABC'.isupper() }} {{ 'abc'.islower() }} {{ '  '.isspace() }} {{ 'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }}",
 "{{ '{} and {}'.format(1, 'two') }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{name}!'.format(name='x') }} {{ '{:>5}|{:<4}|{:^5}|{:.2f}|{:03d}'.format('r', 'l', 'c', 3.14159, 7) }}",
 -- filters
 "{{ l | sort }} {{ l | sort(reverse=true) }} {{ strs | sort }} {{ strs | sort(case_sensitive=true) }} {{ users | sort(attribute='age') | map(attribute='name') | list }} {{ users | sort(attribute='age,name') | map(attribute='name') | join(',') }}",
 "{{ l | length }} {{ s | length }} {{ u | length }} {{ d | count }} {{ l | first }} {{ l | last }} {{ s | first }} {{ e | first }}|{{ l | min }} {{ l | max }} {{ strs | max }} {{ users | max(attribute='age') }}",
 "{{ l | join }} {{ l | join(', ') }} {{ users | join(', ', attribute='name') }} {{ l | sum }} {{ users | sum(attribute='age') }} {{ mixed | sum }}",
 "{{ s | upper }} {{ s | lower }} {{ 'hello world' | title }} {{ 'hello-wor(ld [x' | title }} {{ 'hELLO' | capitalize }} {{ s | replace('o', '0') }} {{ s | reverse }} {{ l | reverse | list }}",
 "{{ undefined_v | default('dflt') }} {{ nul | default('dflt') }} {{ '' | default('dflt', true) }} {{ e | d('empty', boolean=true) }} {{ n | default(1) }}",
 "{{ '42' | int }} {{ '42.9' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 4.7 | int }} {{ '0x1A' | int(0, 16) }} {{ '3.5' | float }} {{ 'nan?' | float }} {{ 3 | float }} {{ true | int }}",
 "{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 3.14159 | round(2, 'floor') }} {{ 3.1 | round(0, 'ceil') }} {{ 7 | round }} {{ -2.5 | round }} {{ neg | abs }} {{ -1.5 | abs }}",
 "{{ d | tojson }} {{ d | tojson(indent=2) }} {{ l | tojson(indent=0) }} {{ ed | tojson(indent=2) }} {{ e | tojson }} {{ u | tojson }} {{ msgs | tojson(separators=(',', ':')) }} {{ d | tojson(sort_keys=true) }} {{ u | tojson(ensure_ascii=true) }}",
 "{{ (1, 'a') | tojson }} {{ nul | tojson }} {{ 1.0 | tojson }} {{ big | tojson }} {{ exp | tojson }} {{ 'a\"b\\\\c\\n\\u0001\\u007f' | tojson }} {{ d | tojson(indent='\\t') }}",
 "{{ d | dictsort }} {{ {'b': 1, 'A': 2, 'a': 3} | dictsort }} {{ {'b': 1, 'A': 2, 'a': 3} | dictsort(true) }} {{ d | dictsort(by='value', reverse=true) if false else '' }} {{ d | items | list }}",
 "{{ users | selectattr('age', 'equalto', 30) | map(attribute='name') | list }} {{ users | rejectattr('x', 'none') | map(attribute='name') | list }} {{ users | selectattr('x', 'defined') | list | length }} {{ l | select('odd') | list }} {{ l | reject('even') | list }} {{ [0, 1, '', 'a', none] | select | list }}",
 "{{ users | map(attribute='tags') | list }} {{ users | map(attribute='tags', default=[]) | list }} {{ strs | map('upper') | list }} {{ l | map('string') | join('|') }}",
 "{{ strs | unique | list }} {{ strs | unique(case_sensitive=true) | list }} {{ [1, 1.0, true, 2] | unique | list }} {{ users | unique(attribute='age') | map(attribute='name') | list }}",
 "{{ s | wordcount }} {{ u | wordcount }} {{ 'a b c d e f' | truncate(5) }} {{ 'hello world foo bar' | truncate(12) }} {{ 'hello world foo bar' | truncate(12, true) }} {{ 'abcdefghijklmnopqrstuvwxyz' | truncate(10, end='..', leeway=0) }}",
 "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent('> ', blank=true) }}|{{ '' | indent }}",
 "{{ l | batch(2) | list }} {{ l | batch(2, 'x') | list }} {{ [1,2,3,4,5] | slice(2) | list }} {{ users | groupby('age') | map(attribute='grouper') | list }}",
 "{{ '%s-%d' | format('a', 3) }} {{ '%(x)s' | format(x=1) }} {{ '%5.1f|%-4s|%03d' | format(3.14159, 'ab', 7) }} {{ '<a href=\"x\">&' | e }} {{ '%s' % 'pct' }} {{ '%s and %s' % (1, 2) }}",
 "{{ s | string }} {{ l | string }} {{ nul | string }} {{ 1 | string }} {{ undefined_q | string }}| {{ n | safe }} {{ d | attr('items') is defined }} {{ 'x' | attr('upper') is defined }}",
 "{{ s | center(20) }}|{{ l | list }} {{ s | list }} {{ d | list }} {{ 'ab' | list }}",
 -- tests
 "{{ s is string }} {{ n is number }} {{ t is number }} {{ n is integer }} {{ f is float }} {{ fi is float }} {{ t is boolean }} {{ nul is none }} {{ d is mapping }} {{ l is mapping }} {{ l is sequence }} {{ s is sequence }} {{ d is sequence }} {{ l is iterable }} {{ d is iterable }} {{ n is iterable }}",
 "{{ x is defined }} {{ x is undefined }} {{ s is defined }} {{ nul is defined }} {{ d.zz is defined }} {{ t is true }} {{ 1 is true }} {{ no is false }} {{ range is callable }} {{ x is callable }} {{ s is callable }}",
 "{{ n is divisibleby 7 }} {{ n is divisibleby(5) }} {{ 3 is odd }} {{ 4 is even }} {{ n is equalto 42 }} {{ n is eq 42.0 }} {{ n is ne 1 }} {{ 1 is lt 2 }} {{ 'a' is in 'abc' }} {{ 2 is in l }} {{ 'ABC' is upper }} {{ 'abc' is lower }} {{ s is not none }} {{ 'upper' is filter }} {{ 'zz' is test }} {{ 'odd' is test }} {{ nul is sameas none }} {{ t is sameas true }}",
 -- statements
 "{% for x in l %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }};{% endfor %}",
 "{% for x in l %}{{ loop.previtem }}>{{ x }}>{{ loop.nextitem }}|{% endfor %}{% for x in l %}{{ loop.cycle('a', 'b') }}{% endfor %}",
 "{% for x in e %}x{% else %}empty{% endfor %}|{% for x in l if x > 1 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}|{% for x in l if x > 10 %}{{ x }}{% else %}none{% endfor %}",
 "{% for x in l | sort %}{{ x }}{% endfor %}|{% for c in 'héy' %}[{{ c }}]{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for a, b in nested %}{{ a }}{{ b }}{% endfor %}|{% for x in undefined_list %}x{% endfor %}",
 "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
 "{% for x in l %}{% for y in l %}{{ loop.index }}{% endfor %}:{{ loop.index }} {% endfor %}",
 "{% set x = 1 %}{% for i in l %}{% set x = x + i %}{{ x }},{% endfor %}after={{ x }}",
 "{% for i in l %}{% if loop.first %}{% set y = 'set' %}{% endif %}{{ y }},{% endfor %}|{{ y }}",
 "{% if t %}{% set z = 5 %}{% endif %}{{ z }}",
 "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = 1, 2 %}{{ c }}{% set (p, q) = ['x', 'y'] %}{{ p }}{{ q }}",
 "{% set ns = namespace(found=false, items=[]) %}{% for u in users %}{% if u.age == 25 %}{% set ns.found = u.name %}{% endif %}{% set ns.items = ns.items + [u.name] %}{% endfor %}{{ ns.found }} {{ ns.items }} {{ ns.missing }}|{{ ns }}",
 "{% set block_var %}Hello {{ s }}!{% endset %}[{{ block_var }}]{% set up | upper %}shout {{ n }}{% endset %}{{ up }}",
 "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('bob') }} {{ greet('amy', '?') }} {{ greet(name='k', punct='.') }} {{ greet() }}|",
 "{% macro f(a) %}{{ a }}:{{ varargs }}:{{ kwargs }}{% endmacro %}{{ f(1, 2, 3, x=4) }}",
 "{% macro outer() %}[{{ caller() }}]{% endmacro %}{% call outer() %}inside {{ n }}{% endcall %}{% macro lst(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) lst(l) %}<{{ x }}>{% endcall %}",
 "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * (fact(n - 1) | int) }}{% endif %}{% endmacro %}{{ fact(6) }}",
 "{% filter upper %}hello {{ s }}{% endfilter %} {% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}",
 "{% raw %}{{ not processed }} {% if %}{% endraw %}",
 "{# comment #}a{#- trimmed -#} b {# multi\nline #}c",
 "{% for x in d.c recursive %}{% if x is mapping %}{{ x }}{% elif x is iterable %}({{ loop(x) }}){% else %}{{ x }}{% endif %}{% endfor %}",
 "{{ dict(a=1, b=2) }} {{ dict([('x', 1)]) }} {{ range(3) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }} {{ namespace(a=1).a }}",
 "{% set j = joiner(', ') %}{% for x in l %}{{ j() }}{{ x }}{% endfor %}|{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}{{ c.current }}",
 "{% if n > 40 %}big{% elif n > 10 %}mid{% else %}small{% endif %} {% if nul %}a{% elif e %}b{% else %}c{% endif %}",
 -- whitespace control
 "a\n  {% if t %}\n    yes\n  {% endif %}\nb",
 "a\n  {%- if t %}\n    yes\n  {%- endif %}\nb",
 "a\n  {%+ if t %}\n    yes\n  {% endif +%}\nb",
 "a  {{- s -}}  b\n {{ n }} \n{{- n }}\n",
 "<ul>\n{% for x in l %}\n  <li>{{ x }}</li>\n{% endfor %}\n</ul>\n",
 "  {# c #}\n  x\n\t{% set q = 1 %}\n{{ q }}  {% if t -%}\n\n  y  {%- endif %}  z",
 "line1\r\nline2\r{% if t %}\r\nx{% endif %}\n\n",
 "{% for m in msgs %}{{ m.role }}{% if m.content %}:{{ m.content }}{% endif %}{% if m.tool_calls %}{% for tc in m.tool_calls %}[{{ tc.function.name }}({{ tc.function.arguments | tojson }})]{% endfor %}{% endif %}\n{% endfor %}",
 "{{- ' lead' }}  {{ 'x' -}}   \n  {{ 'y' }}",
 "{%- for x in l -%}\n  {{ x }}\n{%- endfor -%}\n",
 "text {{ '}}' }} {{ {'a': {'b': 1}} }} {{ '{%' }} %} {{ \"{{\" }}",
 -- generators (map/select/... are one-shot in jinja2), Markup, deferred filter errors
 "{% set g = l | map('string') %}{{ g | list }}{{ g | list }}|{{ l | select('odd') | length }}",
 "{{ users | map(attribute='name') | tojson }}",
 "{{ l | reverse | tojson }}", "{{ (l | select) is sequence }} {{ (l | select) is iterable }} {{ l | map('abs') | first }} {{ 3 in l | map('abs') }}",
 "{% set r = l | reverse %}{% for x in r %}{{ x }}{% endfor %}{% for x in r %}{{ x }}{% endfor %}|{{ d | reverse | list }}",
 "{{ 'a<b'|safe + '<i>' }} {{ '<i>' + 'x'|safe }} {{ ('<p>%s</p>'|safe) % '<x>' }} {{ 'a'|safe ~ '<' }} {{ '<'|e }} {{ '<'|e|e }} {{ '<'|safe is string }} {{ ('x'|safe).upper() }}",
 "{% if false %}{{ x | no_such_filter }}{% endif %}ok {{ 1 if true else (x | no_such_filter) }}",
 "{% if true %}{{ x | no_such_filter }}{% endif %}",
 "{% if true %}{% for i in l %}{{ i | no_such_filter }}{% endfor %}{% endif %}",
 "{% if x is no_such_test %}{% endif %}",
 -- more statements and expressions seen in real templates
 "{%- for message in msgs -%}{%- if loop.first and message.role != 'system' %}SYS{% endif %}{{ message.role | upper }}{{ '\n' if not loop.last }}{%- endfor %}",
 "{% set ns = namespace(sys='') %}{% for m in msgs %}{% if m.role == 'system' %}{% set ns.sys = m.content %}{% endif %}{% endfor %}[{{ ns.sys }}]",
 "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }} {{ msgs | map(attribute='role') | join(',') }} {{ msgs[-1].role }} {{ (msgs | last).content }}",
 "{% for tc in msgs[2].tool_calls %}{{ tc.function.arguments | tojson(indent=4) }}{{ tc['function']['arguments'].b[2] }}{% endfor %}",
 "{% for k, v in msgs[2].tool_calls[0].function.arguments | items %}{{ k }}={{ v | tojson }};{% endfor %}",
 "{{ msgs[0].content is string }} {{ msgs[2].content is none }} {{ msgs[2].missing is defined }} {{ 'tool_calls' in msgs[2] }} {{ 'tool_calls' in msgs[1] }}",
 "{{ strftime_now('%Y-%m-%d %H:%M:%S %a %b %j %-d %%') }}",
 "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}",
 "{{ d.c.1.x }} {{ nested.0.1 }} {{ (d|dictsort)[0][0] }} {{ d.get('c')[0] }}",
 "{{ '{\"a\": 1}' }} {{ \"It's\" }} {{ '\\'' }} {{ '\\u2028'|length }} {{ '\\N' if false else 'n' }}",
 "{%- macro render(x, indent=0) -%}{%- if x is mapping -%}{% for k, v in x.items() %}{{ ' ' * indent }}{{ k }}:\n{{ render(v, indent + 2) }}{% endfor %}{%- elif x is iterable and x is not string -%}{% for i in x %}{{ render(i, indent) }}{% endfor %}{%- else -%}{{ ' ' * indent }}{{ x }}\n{% endif %}{%- endmacro -%}{{ render(d) }}",
 "{{ n | string | length }} {{ [n, f] | map('int') | list }} {{ ['b', 'a'] | sort | first }} {{ d.items() | map('first') | list }} {{ d | length > 2 }}",
 "{{ 1 if 0 }}|{{ none if none }}|{{ (1, 2)[5:] }}|{{ 'x'.__len__ }}|{{ range(3)[1] }}|{{ d.c[5:] }}",
 -- errors
 "{{ l + 1 }}", "{{ s + 1 }}", "{{ 1 + s }}", "{{ n / 0 }}", "{{ n // 0 }}", "{{ n % 0 }}", "{{ 1.0 / 0 }}",
 "{{ undefined_a + 1 }}", "{{ undefined_a.b }}", "{{ undefined_a['b'] }}", "{{ undefined_a() }}", "{{ d.nope.deeper }}", "{{ nul.x }}|", "{{ nul.x.y }}",
 "{{ s < 1 }}", "{{ l < s }}", "{{ undefined_a < 1 }}", "{{ 1 in 5 }}", "{{ 1 in s }}", "{{ 'a' in nul }}",
 "{{ raise_exception('custom error ' ~ n) }}", "{{ l.append(1) }}", "{{ d.pop('a') }}", "{{ d.update({}) }}", "{{ s.__class__ }}|", "{{ l.append }}|",
 "{% for x in n %}{% endfor %}", "{% for x in nul %}{% endfor %}", "{% set a, b = [1, 2, 3] %}", "{% set a, b = [1] %}", "{% set x.y = 1 %}",
 "{{ range(200000) | length }}", "{{ l | tojson(indent=none) }}{{ undefined_a | tojson }}", "{{ range | tojson }}",
 "{% if %}", "{% for %}", "{% endfor %}", "{{ }}", "{{ 1 + }}", "{% if t %}unclosed", "{% foo %}", "{{ x | nosuchfilter }}", "{{ x is nosuchtest }}",
 "{{ 'unterminated }}", "{# unterminated comment", "{% raw %}no end", "{{ (1, 2 }}", "{{ [1, 2) }}", "{% break %}", "{% macro m(a=1, b) %}{% endmacro %}",
 "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}", "{{ 'x'.nosuchmethod() }}", "{{ n() }}", "{{ [1,2][1:2:0] }}",
 "{{ {[1]: 2} }}", "{{ 'abc' | int(base=2) }}", "{{ loop.index }}", "{{ l[1.5] }}|", "{{ l['a'] }}|", "{{ s[99] }}|", "{{ s.x.y }}",
}}

-- Random expressions over literals, the variables above, operators,
-- filters, tests, methods and subscripts: the differential test renders
-- them with both engines.
local LIT = { "0", "1", "-3", "7", "2.5", "1.0", "-0.5", "1e20", "''", "'a'", "'ab c'", "'日本'", "' x '", "'A,b'",
    "none", "true", "false", "[]", "[1, 2]", "['b', 'a']", "[1, 'a']", "{}", "{'a': 1}", "{'b': [1], 'a': 'x'}",
    "(1, 2)", "(1,)", "x", "undefined_v", "l", "d", "s", "n", "f" }
local BIN = { "+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or" }
local FILTERS = { "length", "first", "last", "list", "join(',')", "upper", "lower", "trim", "string", "int", "float",
    "abs", "round", "round(1)", "default('d')", "tojson", "sort", "reverse|list", "unique|list", "min", "max", "sum",
    "items|list", "dictsort", "capitalize", "title", "wordcount", "count", "replace('a', 'b')", "center(5)",
    "batch(2)|list", "select|list", "reject('odd')|list", "map('string')|list", "string|length", "list|length", "e", "safe" }
local TESTS = { "defined", "none", "string", "number", "integer", "float", "mapping", "sequence", "iterable", "boolean",
    "odd", "even", "divisibleby(2)", "in([1, 2])", "eq(1)", "sameas(none)", "true", "false", "undefined", "callable",
    "lower", "upper" }
local POSTFIX = { ".upper()", ".split()", ".strip()", ".get('a')", ".items()|list", ".keys()|list", ".startswith('a')",
    ".replace('a', 'b')", ".count('a')", ".a", "[0]", "[-1]", "[1:]", "[::-1]", "['a']", ".title()", ".values()|list",
    ".join(['x', 'y'])" }

local function pick(t) return t[math.random(#t)] end

local function expression(depth)
    local r = math.random(depth > 2 and 1 or 8)
    if r <= 2 then return pick(LIT)
    elseif r == 3 then return "(" .. expression(depth + 1) .. " " .. pick(BIN) .. " " .. expression(depth + 1) .. ")"
    elseif r == 4 then return "(" .. expression(depth + 1) .. ")|" .. pick(FILTERS)
    elseif r == 5 then
        return "(" .. expression(depth + 1) .. " is " .. (math.random(3) == 1 and "not " or "") .. pick(TESTS) .. ")"
    elseif r == 6 then return "(" .. expression(depth + 1) .. ")" .. pick(POSTFIX)
    elseif r == 7 then
        return "(" .. expression(depth + 1) .. " if " .. expression(depth + 1) .. " else " .. expression(depth + 1) .. ")"
    end
    return (math.random(2) == 1 and "not " or "-") .. "(" .. expression(depth + 1) .. ")"
end

M.expression_vars = J[==[{"x": 3, "l": [3, 1, 2], "d": {"b": 2, "a": 1}, "s": "Hello", "n": null, "f": 1.5}]==]

-- A random expression (math.random: seed it first).
function M.random_expression() return expression(0) end

-- Random templates: nested if/for/set/macro/with/filter blocks, loop
-- variables, namespaces, break/continue, comments and raw blocks, with
-- random whitespace control and indentation between the tags.
local TEXT = { "", "x", " ", "\n", "  ", "\t", "a b", "\n  ", "  \n", "\n\n", " y\n", "é", "}", "{", "%" }
local SIGNS = { "", "", "", "-", "+" }
local NAMES = { "a", "b", "i", "x", "l", "s", "ns.v", "loop.index", "loop.first", "loop.length", "loop.revindex" }
local VALUES = { "1", "'t'", "a ~ 'z'", "b + 1", "i * 2", "l | length", "x", "[1, 2]", "none", "s.upper()",
    "ns.v + 1", "loop.index0 if loop is defined else -1", "a is defined", "b | default(0) + 1" }

local function tag(body, close)
    local open = "{%" .. pick(SIGNS)
    local close_sign = pick(SIGNS)
    return open .. " " .. body .. " " .. close_sign .. "%}" .. (close or "")
end

local function text()
    local t = pick(TEXT)
    if math.random(3) == 1 then t = t .. pick(TEXT) end
    return t
end

local block

local function statement(depth, in_loop)
    local r = math.random(depth > 3 and 4 or 14)
    if r <= 2 then return text()
    elseif r == 3 then return "{{" .. pick(SIGNS):gsub("%+", "") .. " " .. pick(NAMES) .. " " .. pick(SIGNS):gsub("%+", "") .. "}}"
    elseif r == 4 then return tag("set " .. pick({ "a", "b", "x" }) .. " = " .. pick(VALUES))
    elseif r == 5 then return tag("set ns.v = " .. pick(VALUES))
    elseif r == 6 then
        return tag("if " .. pick(VALUES)) .. block(depth + 1, in_loop)
            .. (math.random(2) == 1 and tag("elif " .. pick(VALUES)) .. block(depth + 1, in_loop) or "")
            .. (math.random(2) == 1 and tag("else") .. block(depth + 1, in_loop) or "") .. tag("endif")
    elseif r == 7 or r == 8 then
        local iter = pick({ "l", "[1, 2, 3]", "range(3)", "s", "[]", "d", "d.items()" })
        local target = iter == "d.items()" and "k, v" or "i"
        return tag("for " .. target .. " in " .. iter .. (math.random(4) == 1 and " if i != 2" or ""))
            .. block(depth + 1, true)
            .. (math.random(3) == 1 and tag("else") .. block(depth + 1, in_loop) or "") .. tag("endfor")
    elseif r == 9 and in_loop then return tag(pick({ "break", "continue" }))
    elseif r == 10 then
        return tag("macro m(p, q=2)") .. block(depth + 1, false) .. "{{ p }}{{ q }}" .. tag("endmacro")
            .. "{{ m(" .. pick(VALUES) .. ") }}"
    elseif r == 11 then return tag("with a = " .. pick(VALUES)) .. block(depth + 1, in_loop) .. tag("endwith")
    elseif r == 12 then return tag("filter upper") .. block(depth + 1, in_loop) .. tag("endfilter")
    elseif r == 13 then return "{#" .. pick(SIGNS) .. " c " .. pick(SIGNS) .. "#}"
    end
    return tag("set b") .. block(depth + 1, in_loop) .. tag("endset") .. "[{{ b }}]"
end

function block(depth, in_loop)
    local out = {}
    for i = 1, math.random(1, 4) do out[i] = statement(depth, in_loop) end
    return table.concat(out)
end

M.template_vars = J[==[{"l": [3, 1, 2], "d": {"b": 2, "a": 1}, "s": "ab", "x": 5}]==]

-- A random template (math.random: seed it first).
function M.random_template()
    return "{% set ns = namespace(v=0) %}" .. block(0, false) .. "|{{ a }}|{{ b }}|{{ ns.v }}"
end

return M
