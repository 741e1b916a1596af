-- cli.lua — `apr COMMAND ...`: finds lua/apr/cmd/COMMAND.lua and runs it.
--
-- Exit codes: 0 success, 1 failure, 2 usage error. Errors are one line on
-- stderr; a Lua traceback appears only for bugs in apr itself, or for any
-- error when APR_DEBUG=1.
local args = require "apr.cli.args"

local M = {}

-- The commands `apr help` lists, in the order a newcomer meets them: one
-- for each lua/apr/cmd/NAME.lua (cli_spec checks both ways).
M.commands = {
    "pull", "info", "inspect", "verify", "convert", "diff", "synth", "run", "repl",
    "pass", "chat", "serve", "bench", "trace", "devices", "version", "help",
}

-- A failure the user caused or must fix (bad file, missing model): exit 1
-- with the message alone. Commands call cli.fail(...) for these.
local Failure = {}
Failure.__tostring = function(e) return e.message end

function M.fail(fmt, ...)
    local msg = select("#", ...) > 0 and string.format(fmt, ...) or fmt
    error(setmetatable({ message = msg }, Failure), 0)
end

-- Returns the module of a command, or nil if there is no such command.
function M.load_command(name)
    if not name:match("^[%w_-]+$") then return nil end
    local ok, mod = pcall(require, "apr.cmd." .. name)
    if ok then return mod end
    if type(mod) == "string" and mod:find("module 'apr.cmd." .. name .. "' not found", 1, true) then
        return nil
    end
    error(mod, 0)
end

local function eprint(...)
    io.stderr:write(table.concat({ ... }), "\n")
end

-- libuv handles still open when a command ends (those of a server that
-- failed to start, a script's timer) would otherwise be closed by luv while
-- the Lua state is torn down, calling back into it: a crash at exit.
local function close_uv_handles()
    local uv = package.loaded.luv
    if not uv then return end
    uv.walk(function(h) if not h:is_closing() then h:close() end end)
    uv.run("nowait")
end

-- Runs one command with its argument list; returns the exit code.
function M.run_command(name, argv)
    local cmd = M.load_command(name)
    if not cmd then
        eprint("apr: unknown command '", name, "' (see 'apr help')")
        return 2
    end
    local tracing
    local ok, result = xpcall(function()
        local opts = args.parse(cmd.spec, argv)
        if opts.help then
            io.stdout:write(args.help(name, cmd.spec))
            return 0
        end
        -- --trace DIR, or APR_TRACE_DIR from `apr trace` (lua/apr/trace/session.lua);
        -- `apr trace` itself renders that folder, it does not write into it
        if opts.trace or (os.getenv("APR_TRACE_DIR") and name ~= "trace") then
            tracing = require("apr.trace.session").open(name, argv, opts)
        end
        return cmd.run(opts) or 0
    end, function(e)
        if type(e) == "table" then return e end
        return { bug = tostring(e), traceback = debug.traceback(tostring(e), 2) }
    end)
    if tracing then tracing:close(ok and result or 1) end
    close_uv_handles()
    if ok then return result end
    if args.is_usage_error(result) then
        eprint("apr ", name, ": ", result.message)
        eprint("usage: ", cmd.spec.usage, "  (apr ", name, " --help for more)")
        return 2
    elseif getmetatable(result) == Failure then
        eprint("apr ", name, ": ", result.message)
        if os.getenv("APR_DEBUG") == "1" then eprint(debug.traceback()) end
        return 1
    end
    eprint("apr ", name, ": internal error: ", tostring(result.bug or result.message or result))
    if os.getenv("APR_DEBUG") == "1" or not result.bug then
        eprint(result.traceback or "")
    else
        eprint("(set APR_DEBUG=1 for the traceback)")
    end
    return 1
end

function M.main(argv)
    local list = {}
    for i = 1, #argv do list[i] = argv[i] end
    M.argv = { unpack(list) }  -- the command line as given, for reports that record it
    local name = table.remove(list, 1)
    if name == nil then
        -- `apr` alone: the REPL on a terminal, the help otherwise.
        local tty = require("apr.cli.term").isatty(0)
        name = tty and "repl" or "help"
    elseif name == "-h" or name == "--help" then
        name = "help"
    elseif name == "-v" or name == "--version" then
        name = "version"
    end
    return M.run_command(name, list)
end

return M
