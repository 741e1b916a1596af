-- apr help [COMMAND]: the list of commands, or one command's help.
local cli = require "apr.cli"
local args = require "apr.cli.args"

local M = {}

M.spec = {
    usage = "apr help [COMMAND]",
    summary = "List the commands, or show one command's help.",
    positional = { min = 0, max = 1, name = "COMMAND" },
    examples = { "apr help", "apr help pass" },
}

function M.run(opts)
    if opts[1] then
        local cmd = cli.load_command(opts[1])
        if not cmd then args.usage_error("unknown command '%s'", opts[1]) end
        io.stdout:write(args.help(opts[1], cmd.spec))
        return 0
    end
    local out = { "apr — a Lua-scriptable LLM inference runtime", "",
                  "usage: apr COMMAND [ARGS...]    (apr COMMAND --help for details)", "",
                  "commands:" }
    for _, name in ipairs(cli.commands) do
        local cmd = cli.load_command(name)
        if cmd then out[#out + 1] = string.format("  %-10s %s", name, cmd.spec.summary) end
    end
    out[#out + 1] = ""
    out[#out + 1] = "With no command on a terminal, apr opens the Lua prompt (apr repl)."
    io.stdout:write(table.concat(out, "\n"), "\n")
    return 0
end

return M
