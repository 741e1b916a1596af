-- chat.lua — renders a conversation with a model's chat template, as
-- transformers' apply_chat_template(messages, tools=..., tokenize=False,
-- add_generation_prompt=...) does.
--
--   local chat = require "apr.chat"
--   local text, err = chat.render(template_source, {
--       { role = "system", content = "You are terse." },
--       { role = "user", content = "2+2?" },
--   }, { add_generation_prompt = true, bos_token = "<|begin_of_text|>" })
--
-- Messages are Lua tables or values decoded by apr.json (which keeps key
-- order, so tool schemas and arguments print in their original order).
-- content may be a string, empty, json.null or absent; an assistant turn
-- may carry tool_calls = { { type = "function", ["function"] = { name = ...,
-- arguments = <table or JSON string> } } }; tool results use role "tool".
local jinja = require "apr.jinja"
local json = require "apr.json"
local trace = require "apr.trace"

local chat = {}

-- Options that steer rendering rather than becoming template variables.
local RENDER_OPTS = { max_output = true, max_steps = true, max_macro_depth = true, now = true }

local function check_messages(messages)
    if type(messages) ~= "table" then error("chat.render: messages must be an array of tables", 3) end
    local n = 0
    for k in pairs(messages) do
        if type(k) ~= "number" then error("chat.render: messages must be an array, found key " .. tostring(k), 3) end
        n = n + 1
    end
    for i = 1, n do
        if type(messages[i]) ~= "table" then
            error(string.format("chat.render: message %d is a %s, not a table", i, type(messages[i])), 3)
        end
    end
end

-- chat.render(template_source, messages [, opts]) -> text | nil, message, err
-- opts: tools (array of JSON schemas, default None), add_generation_prompt
-- (false), bos_token, eos_token, documents, now (epoch seconds for
-- strftime_now), limits (max_output, max_steps, max_macro_depth), and any
-- other key becomes a template variable (date_string, enable_thinking...).
-- Errors in the template, including raise_exception(), return nil and the
-- message; wrong argument types raise.
function chat.render(source, messages, opts)
    if type(source) ~= "string" then error("chat.render: template source must be a string", 2) end
    check_messages(messages)
    opts = opts or {}
    local list = {}
    for i = 1, #messages do list[i] = messages[i] end
    local vars = {
        messages = json.array(list),
        tools = json.null,
        documents = json.null,
        add_generation_prompt = false,
    }
    local render_opts = {}
    for k, v in pairs(opts) do
        if RENDER_OPTS[k] then render_opts[k] = v elseif type(k) == "string" then vars[k] = v end
    end
    if vars.tools == nil then vars.tools = json.null end
    return trace.span("template render", jinja.render, source, vars, render_opts)
end

return chat
