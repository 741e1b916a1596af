-- jinja_oracle.lua — runs template cases through Debian's python3-jinja2
-- (tests/lua/apr/jinja_oracle.py, configured as Hugging Face configures
-- it) and through apr.jinja, for specs that compare the two.
local json = require "apr.json"
local jinja = require "apr.jinja"
local h = require "tests.lua.helpers"

local M = {}

M.python = "/usr/bin/python3"
M.script = "tests/lua/apr/jinja_oracle.py"

-- True when the oracle can run (Debian's python3 with jinja2 3.x).
function M.available()
    if M._available == nil then
        local ok = os.execute(M.python .. " -c 'import jinja2, sys; sys.exit(0 if jinja2.__version__ >= \"3\" else 1)' 2>/dev/null")
        M._available = (ok == 0 or ok == true)
    end
    return M._available
end

-- Renders cases ({ template, vars, now, keep_trailing_newline }) with
-- jinja2 in one python3 process; returns their results in order.
function M.python_render(cases)
    local dir = h.tmpdir()
    local input, output = dir .. "/cases.json", dir .. "/results.json"
    local payload = {}
    for i, c in ipairs(cases) do
        local o = json.object()
        o.template = c.template
        o.vars = c.vars or json.object()
        o.now = c.now or json.null
        o.keep_trailing_newline = c.keep_trailing_newline or false
        payload[i] = o
    end
    local text = assert(json.encode(json.array(payload)))
    local f = assert(io.open(input, "wb"))
    f:write(text)
    f:close()
    local ok = os.execute(string.format("%s %s %s %s", M.python, M.script, input, output))
    assert(ok == 0 or ok == true, "jinja_oracle.py failed")
    local results = assert(json.decode(h.read_file(output)))
    h.rmtree(dir)
    return results
end

-- Renders one case with apr.jinja (or with the case's own c.render
-- function): { ok, text } or { ok = false, message, err }.
function M.lua_render(c)
    if c.render then
        local text, msg, err = c.render(c)
        if not text then return { ok = false, message = msg, err = err } end
        return { ok = true, text = text }
    end
    local tmpl, msg, err = jinja.compile(c.template, { keep_trailing_newline = c.keep_trailing_newline })
    if not tmpl then return { ok = false, message = msg, err = err } end
    local text
    text, msg, err = tmpl:render(c.vars, { now = c.now })
    if not text then return { ok = false, message = msg, err = err } end
    return { ok = true, text = text }
end

-- Python exception classes and the error kinds apr reports for them.
M.KINDS = {
    UndefinedError = "undefined", TemplateSyntaxError = "syntax", TemplateAssertionError = "syntax",
    TemplateError = "raise", SecurityError = "security", TypeError = "type", ValueError = "value",
    ZeroDivisionError = "zero_division", OverflowError = "overflow",
    TemplateRuntimeError = "runtime", FilterArgumentError = "filter_argument",
}

-- Compares both renderers on every case. Returns a list of mismatch
-- descriptions (empty when they agree): same text, or both failing (with
-- the same kind of error where the kinds correspond).
function M.compare(cases)
    local expected = M.python_render(cases)
    local mismatches = {}
    for i, c in ipairs(cases) do
        local want, got = expected[i], M.lua_render(c)
        local bad
        if want.ok and got.ok then
            if want.text ~= got.text then
                bad = string.format("text differs\n  want %q\n  got  %q", want.text, got.text)
            end
        elseif want.ok then
            bad = string.format("apr failed: %s\n  want %q", got.message, want.text)
        elseif got.ok then
            bad = string.format("jinja2 failed (%s: %s) but apr rendered %q", want.error, want.message, got.text)
        else
            local kind = M.KINDS[want.error]
            if kind and got.err and got.err.kind ~= kind then
                bad = string.format("error kinds differ: jinja2 %s (%s), apr %s (%s)",
                    want.error, want.message, got.err.kind, got.message)
            end
        end
        if bad then
            mismatches[#mismatches + 1] = string.format("case %d%s: %s\n  template %q",
                i, c.name and (" (" .. c.name .. ")") or "", bad, c.template)
        end
    end
    return mismatches
end

return M
