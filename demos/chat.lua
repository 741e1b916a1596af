-- chat.lua — a two-turn conversation; the second turn reuses the first's
-- context, so only its new tokens are processed.
--
--   apr run demos/chat.lua [MODEL]
local apr = require "apr"

local path = arg[1] or require("apr.model").default_model_path()
local m = assert(apr.load(path))

local messages = { { role = "system", content = "You are a terse assistant." } }
local function ask(question)
    messages[#messages + 1] = { role = "user", content = question }
    io.write("> ", question, "\n")
    local gen = m:chat(messages, { max_tokens = 64, temperature = 0 })
    local answer = {}
    for t in gen do
        io.write(t.text)
        answer[#answer + 1] = t.text
    end
    io.write("\n")
    messages[#messages + 1] = { role = "assistant", content = table.concat(answer) }
    return gen.summary
end

ask("Name a sorting algorithm.")
local second = ask("What is its worst-case complexity?")
io.stderr:write(string.format("second turn: %d prompt tokens, %d reused from the first\n",
    second.n_prompt, second.n_cached))
