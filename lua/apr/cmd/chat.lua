-- apr chat [MODEL]: an interactive, multi-turn conversation.
local cli = require "apr.cli"
local term = require "apr.cli.term"
local xdg = require "apr.fs.xdg"
local replace = require "apr.fs.replace"
local generation = require "apr.cli.generation"

local M = {}

M.spec = {
    usage = "apr chat [MODEL] [options]",
    summary = "Chat with a model: multi-turn, streamed, history saved to a file.",
    description =
        "Each line you type is a user turn; the answer streams back. The conversation\n" ..
        "stays in the model's context, so a turn only processes its new tokens. After\n" ..
        "every turn the conversation is saved as JSON to --history (default\n" ..
        "$XDG_STATE_HOME/apr/chat_history.json, else ~/.local/state/apr/).\n" ..
        "Commands: /clear (start over), /save [PATH], /load PATH, /exit (or Ctrl+D), /help.\n" ..
        "Ctrl+C stops the answer being written, not the session; at the prompt it drops\n" ..
        "what was typed and says how to leave, and a second Ctrl+C in a row leaves like\n" ..
        "/exit (exit 0). With stdin not a terminal, each line is a turn and only the\n" ..
        "answers are printed.",
    positional = { min = 0, max = 1, name = "MODEL" },
    options = generation.options {
        { "system", value = "TEXT", help = "the system message" },
        { "history", value = "PATH", help = "where the conversation is saved" },
        { "resume", help = "continue the conversation saved in --history" },
        { "max-tokens", min = 1, default = 2048, help = "most tokens per answer" },
        -- Qwen2.5's own generation_config.json defaults.
        { "temperature", default = 0.7 }, { "top-k", default = 20 }, { "top-p", default = 0.8 }, "min-p",
        { "repeat-penalty", default = 1.05 }, "seed",
        "ctx", "kv-type", "threads", "device", "gpu", "vram-budget", "trace",
        { "verbose", short = "v", help = "timings after each answer, on stderr" },
    },
    examples = {
        "apr chat",
        "apr chat --system 'Answer in one sentence.' --history /tmp/talk.json",
        "printf 'Hi\\nWhat did I just say?\\n' | apr chat --temperature 0",
    },
}

local json = require "apr.json"

-- The conversation as JSON: an array even when empty, keys in the order
-- people read them.
local function encode(messages)
    local list = json.array()
    for i, msg in ipairs(messages) do
        local o = json.object()
        o.role = msg.role
        o.content = msg.content
        list[i] = o
    end
    local doc = json.object()
    doc.messages = list
    return json.encode(doc, { indent = 2 })
end

-- save(path, messages) -> true, or nil and a message. The file is replaced
-- whole, so a crash never leaves half a conversation.
local function save(path, messages)
    xdg.mkdir_for(path)
    return replace.write(path, encode(messages) .. "\n")
end

-- load(path) -> messages, or nil and a message saying what is wrong.
local function load(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local text = f:read("*a")
    f:close()
    local doc, err2 = json.decode(text)
    if doc == nil then return nil, string.format("%s: not JSON (%s)", path, tostring(err2)) end
    local list = type(doc) == "table" and (doc.messages or doc) or nil
    if type(list) ~= "table" then return nil, path .. ": expected {\"messages\": [...]}" end
    local messages = {}
    for i, msg in ipairs(list) do
        if type(msg) ~= "table" or type(msg.role) ~= "string" or type(msg.content) ~= "string" then
            return nil, string.format("%s: message %d lacks a string role and content", path, i)
        end
        messages[i] = { role = msg.role, content = msg.content }
    end
    return messages
end

-- Drops the oldest turns (never the system message or the newest user turn)
-- until the rendered conversation leaves room for an answer.
local function fit(m, messages, room)
    while true do
        local ids = m:tokenize(m:render(messages), { special = true })
        if #ids + room <= m.n_ctx then return true end
        local first = (messages[1] and messages[1].role == "system") and 2 or 1
        if first >= #messages then return #ids < m.n_ctx end
        table.remove(messages, first)
    end
end

local HELP = "commands: /clear, /save [PATH], /load PATH, /exit (or Ctrl+D), /help\n"

function M.run(opts)
    local apr = require "apr"
    local tty = term.isatty(0)
    local history = opts.history
    if not history then
        local dir = xdg.state_dir()
        history = dir and (dir .. "/chat_history.json") or nil
    end
    local m = generation.load_model(opts)
    local gen_opts = generation.generate_opts(opts)
    gen_opts.ignore_eos = nil

    local function fresh()
        return opts.system and { { role = "system", content = opts.system } } or {}
    end
    local messages = fresh()
    if opts.resume and history then
        local loaded, err = load(history)
        if not loaded then cli.fail("%s", err) end
        messages = loaded
    end

    local input_history = tty and xdg.state_dir() and (xdg.state_dir() .. "/chat_input_history")
    if input_history then term.load_history(input_history) end
    if tty then
        io.stdout:write(string.format("apr chat — %s. /help for commands, Ctrl+D to leave.\n",
            m.info.name ~= "" and m.info.name or m.path))
    end

    local function note(fmt, ...)
        io.stderr:write(string.format(fmt, ...), "\n")
    end

    local interrupts = 0  -- Ctrl+C in a row at the prompt
    while true do
        local line = term.readline(tty and ">>> " or "")
        if line == nil then break end
        if apr.interrupted() then
            -- Ctrl+C at the prompt: once drops the line and says how to
            -- leave; twice in a row leaves, as /exit does.
            apr.clear_interrupt()
            interrupts = interrupts + 1
            if interrupts >= 2 then break end
            note("(press Ctrl+C again or type /exit to quit)")
            line = ""
        else
            interrupts = 0
        end
        apr.clear_interrupt()
        if tty and line ~= "" then term.add_history(line) end
        local cmd, arg = line:match("^/(%a+)%s*(.-)%s*$")
        if cmd == "exit" or cmd == "quit" then
            break
        elseif cmd == "help" then
            io.stdout:write(HELP)
        elseif cmd == "clear" then
            messages = fresh()
            note("(conversation cleared)")
        elseif cmd == "save" then
            local path = arg ~= "" and arg or history
            if not path then
                note("/save: give a path (no default history location: HOME is not set)")
            else
                local ok, err = save(path, messages)
                if ok then note("(saved %d messages to %s)", #messages, path) else note("/save: %s", err) end
            end
        elseif cmd == "load" then
            if arg == "" then
                note("/load: give a path")
            else
                local loaded, err = load(arg)
                if loaded then
                    messages = loaded
                    note("(loaded %d messages from %s)", #messages, arg)
                else
                    note("/load: %s", err)
                end
            end
        elseif cmd then
            note("unknown command /%s; %s", cmd, HELP:gsub("\n$", ""))
        elseif line:match("%S") then
            messages[#messages + 1] = { role = "user", content = line }
            if not fit(m, messages, math.min(opts.max_tokens, math.floor(m.n_ctx / 4))) then
                table.remove(messages)
                note("this message alone does not fit the context of %d tokens (use --ctx)", m.n_ctx)
            else
                local ok, gen = pcall(m.chat, m, messages, gen_opts)
                if not ok then cli.fail("%s", tostring(gen)) end
                generation.print_notes(m)
                local parts = {}
                local ok2, err = pcall(function()
                    for t in gen do
                        if t.text ~= "" then
                            io.stdout:write(t.text)
                            io.stdout:flush()
                            parts[#parts + 1] = t.text
                        end
                    end
                end)
                if not ok2 then cli.fail("%s", tostring(err)) end
                io.stdout:write("\n")
                io.stdout:flush()
                -- An interrupted answer stays in the conversation as far as
                -- it got, so the context and the history agree.
                messages[#messages + 1] = { role = "assistant", content = table.concat(parts) }
                if gen.summary.finish_reason == "interrupted" then
                    apr.clear_interrupt()
                    note("(interrupted)")
                end
                if opts.verbose then generation.report(gen.summary) end
                if history then
                    local saved, err2 = save(history, messages)
                    if not saved then note("cannot save the history to %s: %s", history, err2) end
                end
            end
        end
    end
    if input_history then term.save_history(input_history) end
    return 0
end

return M
