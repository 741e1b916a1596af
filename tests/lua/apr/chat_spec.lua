-- chat_spec.lua — apr.chat: rendering conversations with real chat
-- templates, checked against python3-jinja2 configured as Hugging Face's
-- apply_chat_template configures it.
local chat = require "apr.chat"
local json = require "apr.json"
local h = require "tests.lua.helpers"
local oracle = require "tests.lua.apr.jinja_oracle"
local conversations = require "tests.lua.apr.chat_conversations"

local FIXTURES = "tests/fixtures/chat-templates/"

local function template(name)
    local src = h.read_file(FIXTURES .. name .. ".jinja")
    assert(src ~= "", "missing fixture " .. name)
    return src
end

local function dec(s) return assert(json.decode(s)) end

-- The template families of the models apr runs, with what their
-- conversations may contain.
local FAMILIES = {
    { name = "qwen2.5-instruct", tools = true, string_arguments = true },
    { name = "qwen2.5-coder-instruct", tools = true, string_arguments = true },
    { name = "chatml" },
    { name = "smollm2-instruct" },
    { name = "llama-3-instruct" },
    { name = "llama-3.1-instruct", tools = true, single_tool_call = true },
    { name = "llama-3.2-instruct", tools = true, single_tool_call = true },
}

local NOW = 1721995200 -- 2024-07-26, for strftime_now

-- A case for the oracle: the template variables as apply_chat_template
-- passes them, and the same conversation through chat.render.
local function chat_case(name, src, messages, opts)
    local vars = json.object()
    vars.messages = messages
    vars.tools = opts.tools or json.null
    vars.documents = json.null
    vars.add_generation_prompt = opts.add_generation_prompt or false
    for _, k in ipairs({ "bos_token", "eos_token", "date_string", "enable_thinking" }) do
        if opts[k] ~= nil then vars[k] = opts[k] end
    end
    local render_opts = { now = NOW }
    for k, v in pairs(opts) do render_opts[k] = v end
    return {
        name = name, template = src, vars = vars, now = NOW,
        render = function() return chat.render(src, messages, render_opts) end,
    }
end

describe("apr.chat", function()
    it("renders a Qwen2.5 tool conversation exactly", function()
        local tools = dec([[ [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
            "required": ["city"]}}}] ]])
        local messages = dec([[ [{"role": "user", "content": "Weather in Zürich?"},
            {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "get_weather",
            "arguments": {"days": 2, "city": "Zürich"}}}]}, {"role": "tool", "content": "{\"temp\": 21.0}"}] ]])
        local text = assert(chat.render(template("qwen2.5-instruct"), messages, { tools = tools, add_generation_prompt = true }))
        assert.equal('<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n'
            .. 'You may call one or more functions to assist with the user query.\n\nYou are provided with function signatures '
            .. 'within <tools></tools> XML tags:\n<tools>\n{"type": "function", "function": {"name": "get_weather", "description": '
            .. '"Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": '
            .. '"integer", "default": 1}}, "required": ["city"]}}}\n</tools>\n\nFor each function call, return a json object with '
            .. 'function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
            .. '"arguments": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Zürich?<|im_end|>\n'
            .. '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"days": 2, "city": "Zürich"}}\n'
            .. '</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{"temp": 21.0}\n</tool_response><|im_end|>\n'
            .. '<|im_start|>assistant\n', text)
    end)

    it("accepts plain Lua tables and extra template variables", function()
        local text = assert(chat.render(template("llama-3.1-instruct"), {
            { role = "system", content = "  Be brief.  " },
            { role = "user", content = "Hi" },
        }, { bos_token = "<|begin_of_text|>", add_generation_prompt = true, date_string = "01 Jan 2025" }))
        assert.equal("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            .. "Today Date: 01 Jan 2025\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            .. "<|start_header_id|>assistant<|end_header_id|>\n\n", text)
    end)

    it("returns the template's own errors as messages", function()
        local calls = dec([[ [{"type": "function", "function": {"name": "a", "arguments": {}}},
            {"type": "function", "function": {"name": "b", "arguments": {}}}] ]])
        local text, msg, err = chat.render(template("llama-3.1-instruct"), {
            { role = "user", content = "x" }, { role = "assistant", tool_calls = calls },
        })
        assert.is_nil(text)
        assert.equal("raise", err.kind)
        assert.truthy(msg:find("This model only supports single tool-calls at once!", 1, true))
        text, msg = chat.render(template("chatml"), { { role = "user" } })
        assert.is_nil(text)
        assert.truthy(msg:find("'dict object' has no attribute 'content'", 1, true))
    end)

    it("raises for arguments of the wrong type", function()
        assert.has_error(function() chat.render(nil, {}) end)
        assert.has_error(function() chat.render("x", "not a list") end)
        assert.has_error(function() chat.render("x", { "not a table" }) end)
    end)

    it("does not modify the caller's messages", function()
        local messages = { { role = "user", content = "hi" } }
        assert(chat.render(template("chatml"), messages, { add_generation_prompt = true }))
        assert.is_nil(getmetatable(messages))
        assert.is_nil(getmetatable(messages[1]))
    end)
end)

describe("apr.chat against python3-jinja2", function()
    for i, family in ipairs(FAMILIES) do
        it("renders 60 seeded " .. family.name .. " conversations identically", function()
            if not oracle.available() then return pending("python3-jinja2 not installed (make deps)") end
            math.randomseed(7000 + i)
            local src = template(family.name)
            local list = {}
            for n = 1, 60 do
                local messages, tools, agp = conversations.generate(family)
                if n % 15 == 0 then
                    -- now and then a message without content: both must fail alike (or not)
                    messages[math.random(#messages)].content = nil
                end
                list[n] = chat_case(family.name, src, messages, {
                    tools = tools, add_generation_prompt = agp,
                    bos_token = "<|begin_of_text|>", eos_token = "<|eot_id|>",
                    date_string = (n % 4 == 0) and "01 Jan 2025" or nil,
                })
            end
            assert.equal("", table.concat(oracle.compare(list), "\n\n"))
        end)
    end

    it("renders conversations with 21 more real templates identically", function()
        if not oracle.available() then return pending("python3-jinja2 not installed (make deps)") end
        math.randomseed(99)
        local p = assert(io.popen("ls " .. FIXTURES .. "llama.cpp/*.jinja"))
        local list = {}
        for path in p:lines() do
            local src = h.read_file(path)
            for n = 1, 10 do
                local messages, tools, agp = conversations.generate({ tools = true, string_arguments = n % 2 == 0 })
                for _, m in ipairs(messages) do
                    if math.random(40) == 1 then m.content = nil end
                end
                list[#list + 1] = chat_case(path:match("[^/]+$"), src, messages, {
                    tools = tools, add_generation_prompt = agp, bos_token = "<s>", eos_token = "</s>",
                    enable_thinking = n % 3 == 0,
                })
            end
        end
        p:close()
        assert.is_true(#list >= 210)
        assert.equal("", table.concat(oracle.compare(list), "\n\n"))
    end)
end)
