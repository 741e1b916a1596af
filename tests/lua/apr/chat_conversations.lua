-- chat_conversations.lua — seeded random conversations for the chat
-- template specs: system/user/assistant turns, tool definitions, tool calls
-- and results, text with CJK, emoji, RTL and combining characters, empty
-- and missing content, quotes, backslashes, newlines and template syntax.
local json = require "apr.json"

local M = {}

-- Fragments that conversations are built from: each is a case a renderer
-- could get wrong.
M.TEXTS = {
    "Hello!", "What is the capital of France?", "Write a Rust quicksort.",
    "你好，世界。请用中文回答。", "日本語のテキスト、カタカナ、ひらがな。", "한국어 문장입니다.",
    "Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷", "مرحبا بالعالم، كيف حالك؟", "שלום עולם",
    "combining: e\u{301} n\u{303} a\u{30A}", "ligature ﬁ and ß and ǅ", "Ελληνικά και Кириллица",
    'He said "hi" and \'bye\'.', "C:\\path\\to\\file and \\n literal", "line one\nline two\n\nline four",
    "\ttabbed\tvalues\t", "  leading and trailing spaces  ", "\n\nnewlines around\n\n",
    "\u{3000}ideographic spaces\u{3000}", "nbsp\u{A0}inside\u{A0}", "{{ not a template }} {% if x %}",
    "<|im_end|> and <|eot_id|> as text", "# Heading\n```python\nprint('x')\n```", "x", "",
    "a" .. string.rep(" word", 40), "{\"json\": [1, 2.5, null, true]}", "zero\u{200B}width",
}

-- Tool schemas as they arrive in requests: nested objects, enums, numbers
-- that must keep their int/float form, unicode descriptions, key order.
M.TOOLS_JSON = {
    [[{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.",
       "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"},
       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}]],
    [[{"type": "function", "function": {"name": "search", "description": "Sök på webben — 検索する 🔎",
       "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "default": 10, "minimum": 1.0, "maximum": 1e3}},
       "required": ["query"], "additionalProperties": false}}}]],
    [[{"type": "function", "function": {"name": "run_code", "parameters": {"type": "object", "properties": {}}}}]],
    [[{"type": "function", "function": {"name": "create_event", "description": "Quotes \"here\" and a backslash \\ and\nnewline",
       "parameters": {"type": "object", "properties": {"title": {"type": "string"}, "when": {"type": "object",
       "properties": {"start": {"type": "string", "format": "date-time"}, "minutes": {"type": "number"}}},
       "attendees": {"type": "array", "items": {"type": "string"}}, "private": {"type": "boolean", "default": null}}}}}]],
}

M.ARGUMENTS_JSON = {
    [[{"city": "Paris", "unit": "celsius"}]], [[{"query": "Lua 5.1 vs LuaJIT", "limit": 3}]], [[{}]],
    [[{"title": "Réunion 会議", "when": {"start": "2024-07-26T10:00:00Z", "minutes": 30.0}, "attendees": ["a@b.c", "Zoë"], "private": null}]],
    [[{"code": "print(\"hi\\n\")", "timeout": 1.5, "nested": [[1, 2], {"k": false}]}]],
}

local function pick(list) return list[math.random(#list)] end

local function text()
    local n = math.random(3)
    local parts = {}
    for i = 1, n do parts[i] = pick(M.TEXTS) end
    return table.concat(parts, math.random(2) == 1 and " " or "\n")
end

local function decode(s) return assert(json.decode(s)) end

-- A tool call in OpenAI form; arguments an object or (sometimes) a JSON string.
local function tool_call(opts)
    local call = json.object()
    call.type = "function"
    if math.random(3) == 1 then call.id = "call_" .. math.random(1000, 9999) end
    local fn = json.object()
    local tool = decode(pick(M.TOOLS_JSON))
    fn.name = tool["function"].name
    local args = pick(M.ARGUMENTS_JSON)
    if opts.string_arguments and math.random(4) == 1 then
        fn.arguments = args
    else
        fn.arguments = decode(args)
    end
    call["function"] = fn
    return call
end

local function message(role, content)
    local m = json.object()
    m.role = role
    if content ~= nil then m.content = content end
    return m
end

-- One conversation for a template family. opts:
--   tools            the family renders tool definitions and calls
--   single_tool_call at most one call per assistant turn (Llama 3.1)
--   string_arguments arguments may be JSON strings
--   alternate        user/assistant strictly alternate, first turn user
-- Returns messages, tools (json array or nil), add_generation_prompt.
function M.generate(opts)
    opts = opts or {}
    local messages = {}
    if math.random(3) > 1 then messages[#messages + 1] = message("system", math.random(8) == 1 and "" or text()) end
    local turns = math.random(1, 4)
    local tools
    if opts.tools and math.random(2) == 1 then
        tools = {}
        for i = 1, math.random(1, 3) do tools[i] = decode(M.TOOLS_JSON[(i + math.random(4)) % #M.TOOLS_JSON + 1]) end
        tools = json.array(tools)
    end
    for t = 1, turns do
        messages[#messages + 1] = message("user", math.random(10) == 1 and "" or text())
        local last = t == turns and math.random(2) == 1
        if not last then
            if tools and math.random(2) == 1 then
                local m = message("assistant", nil)
                local r = math.random(3)
                if r == 1 then m.content = json.null elseif r == 2 then m.content = text() end
                local calls = {}
                local n = opts.single_tool_call and 1 or math.random(1, 2)
                for i = 1, n do calls[i] = tool_call(opts) end
                m.tool_calls = json.array(calls)
                messages[#messages + 1] = m
                for _ = 1, n do
                    messages[#messages + 1] = message("tool", pick({ "22°C, sunny", "[]", "{\"ok\": true}", text() }))
                end
                if not opts.alternate then
                    messages[#messages + 1] = message("assistant", text())
                end
            else
                messages[#messages + 1] = message("assistant", math.random(10) == 1 and "" or text())
            end
        end
    end
    return json.array(messages), tools, math.random(2) == 1
end

return M
