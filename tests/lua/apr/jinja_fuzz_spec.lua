-- jinja_fuzz_spec.lua — seeded mutations of real templates and feature
-- snippets: every one must compile and render to text or give a clean
-- error (never a Lua error, never an "internal" one), within bounded time.
local jinja = require "apr.jinja"
local json = require "apr.json"
local chat = require "apr.chat"
local h = require "tests.lua.helpers"
local cases = require "tests.lua.apr.jinja_cases"
local conversations = require "tests.lua.apr.chat_conversations"

-- Pieces a mutation inserts: Jinja syntax, operators, keywords, quotes,
-- escapes, newlines, invalid UTF-8.
local PIECES = {
    "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "{%+", "+%}", "|", "(", ")", "[", "]",
    "{", "}", "'", '"', "\\", "\\u", "\\x4", " if ", " else ", " for ", " in ", " not ", " and ", " or ",
    " is ", "endfor", "endif", "endmacro", "endset", "endraw", "raw", "loop", "ns", ".", ",", ":", "~",
    "*", "**", "//", "%", "-", "+", "=", "==", "!=", "<", ">", "\n", "\r\n", "\t", " ", "0", "1e9",
    "-1", "9999999999", "none", "true", "x", "l", "d", "s", "users", "msgs", "range(", "namespace(",
    "|tojson", "|join", "|map(", "|selectattr(", "|items", "|list", "|length", "|trim", "|default(",
    "recursive", "caller()", "break", "continue", "set ", "macro ", "call ", "filter ", "with ",
    "\255", "\192\128", "\237\160\128", "日本", "😀", "\0",
}

local function mutate(s)
    for _ = 1, math.random(1, 6) do
        local pos = math.random(1, #s + 1)
        local op = math.random(5)
        local piece = PIECES[math.random(#PIECES)]
        if op == 1 then
            s = s:sub(1, pos - 1) .. piece .. s:sub(pos)
        elseif op == 2 then
            s = s:sub(1, pos - 1) .. s:sub(pos + math.random(1, 8))
        elseif op == 3 then
            s = s:sub(1, pos - 1) .. piece .. s:sub(pos + math.random(0, 4))
        elseif op == 4 then
            -- duplicate a stretch (nesting, repeated tags)
            local len = math.random(1, 40)
            s = s:sub(1, pos - 1 + len) .. s:sub(pos, pos - 1 + len) .. s:sub(pos + len)
        else
            s = s:sub(1, math.random(0, #s)) -- truncate
        end
    end
    return s
end

local LIMITS = { max_steps = 20000, max_output = 1000000, max_macro_depth = 50 }

-- Renders src; fails the test on a raised error or an internal one.
local function check(src, vars)
    local ok, text, msg, err = pcall(jinja.render, src, vars, LIMITS)
    assert(ok, "raised on template " .. string.format("%q", src) .. ": " .. tostring(text))
    if text == nil then
        assert(type(msg) == "string" and type(err) == "table", "bad error result for " .. string.format("%q", src))
        assert(err.kind ~= "internal", msg .. "\n  template " .. string.format("%q", src))
    else
        assert(type(text) == "string")
    end
end

describe("apr.jinja fuzz", function()
    it("survives mutated feature snippets", function()
        math.randomseed(31337)
        local t0 = os.clock()
        for n = 1, 3000 do
            local a = cases.snippets[math.random(#cases.snippets)]
            local src = mutate(a)
            if n % 5 == 0 then
                src = src .. mutate(cases.snippets[math.random(#cases.snippets)])
            end
            local before = os.clock()
            check(src, cases.vars)
            assert(os.clock() - before < 2, "one render took over 2 s: " .. string.format("%q", src))
        end
        assert(os.clock() - t0 < 60, "fuzzing took too long")
    end)

    it("survives mutated real chat templates", function()
        math.randomseed(2718)
        local p = assert(io.popen("ls tests/fixtures/chat-templates/*.jinja tests/fixtures/chat-templates/llama.cpp/*.jinja"))
        local sources = {}
        for path in p:lines() do sources[#sources + 1] = h.read_file(path) end
        p:close()
        local t0 = os.clock()
        for n = 1, 600 do
            local src = mutate(sources[n % #sources + 1])
            local messages, tools, agp = conversations.generate({ tools = true })
            local ok, text, msg, err = pcall(chat.render, src, messages,
                { tools = tools, add_generation_prompt = agp, max_steps = 20000, max_output = 1000000 })
            assert(ok, "raised: " .. tostring(text))
            if text == nil then
                assert(err.kind ~= "internal", msg)
            end
        end
        assert(os.clock() - t0 < 60, "fuzzing took too long")
    end)

    it("survives random variable values", function()
        math.randomseed(1618)
        local docs = { '[]', '{}', 'null', '""', '0', '-1.5', '[[[]]]', '{"a": {"a": {"a": null}}}',
            '"\\ud800"', '[1, "x", null, true, 1.0, {"k": []}]', '12345678901234567890' }
        for n = 1, 400 do
            local vars = {}
            for _, name in ipairs({ "s", "n", "l", "d", "users", "msgs", "e", "t", "u" }) do
                local v, err = json.decode(docs[math.random(#docs)])
                assert(err == nil, err)
                vars[name] = v
            end
            check(cases.snippets[n % #cases.snippets + 1], vars)
        end
    end)
end)
