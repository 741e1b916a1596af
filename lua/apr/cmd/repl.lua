-- apr repl: an interactive Lua prompt with apr loaded.
local term = require "apr.cli.term"
local pretty = require "apr.cli.pretty"
local xdg = require "apr.fs.xdg"

local M = {}

M.spec = {
    usage = "apr repl",
    summary = "Interactive Lua prompt with `apr` loaded (line editing on a terminal).",
    description = "Type Lua statements or expressions; expressions print their values.\n" ..
                  "A line that does not parse yet continues on the next (like lua's REPL).\n" ..
                  "History is kept in $XDG_STATE_HOME/apr/repl_history. Ctrl+D leaves; Ctrl+C\n" ..
                  "drops the input so far, and a second Ctrl+C in a row leaves too (exit 0).\n" ..
                  "An error prints its message and the traceback of your code.",
    examples = { "apr repl", "echo 'print(apr.version)' | apr repl" },
}

local function history_path()
    local dir = xdg.state_dir()
    if not dir then return nil end
    xdg.mkdir(dir)
    return dir .. "/repl_history"
end

-- Compiles a line as an expression first (so `1+1` prints 2), else as a
-- statement. Returns the chunk, or nil plus an error, with incomplete=true
-- when more input could complete it.
-- The error's message and the traceback of the user's code: apr's own
-- frames (this file's xpcall, cli.lua below it) and the builtin that raised
-- are no business of the user's.
local function traceback(e)
    local msg = type(e) == "string" and e or pretty.format(e)
    local tb = debug.traceback(msg, 2)
    tb = tb:gsub("\n%s*%[C%]: in function 'xpcall'\n[^\n]*apr/cmd/repl%.lua:.*$", "")
    tb = tb:gsub("\n%s*%[builtin#%d+%]:[^\n]*", "")
    tb = tb:gsub("\nstack traceback:$", "")
    return tb
end
M.traceback = traceback

local function compile(src)
    local chunk = loadstring("return " .. src, "=stdin")
    if chunk then return chunk end
    local err
    chunk, err = loadstring(src, "=stdin")
    if chunk then return chunk end
    return nil, err, err:match("<eof>'?$") ~= nil
end

function M.run()
    _G.apr = require "apr"
    local tty = term.isatty(0)
    local hist = tty and history_path()
    if hist then term.load_history(hist) end
    if tty then
        io.stdout:write(string.format("apr %s — Lua %s. `apr` is loaded; Ctrl+D to leave.\n",
            _G.apr.version, jit.version))
    end
    local buffer
    local interrupts = 0  -- Ctrl+C in a row at the prompt
    local C = require("apr.core").C
    while true do
        local line = term.readline(buffer and ">> " or "> ")
        if line == nil then break end
        if C.apr_interrupted() ~= 0 then
            C.apr_interrupt_clear()
            interrupts = interrupts + 1
            if interrupts >= 2 then break end
            io.stderr:write("(press Ctrl+C again or Ctrl+D to leave)\n")
            buffer, line = nil, nil
        else
            interrupts = 0
        end
        if line then buffer = buffer and (buffer .. "\n" .. line) or line end
        local chunk, err, incomplete
        if buffer then chunk, err, incomplete = compile(buffer) else incomplete = true end
        if chunk then
            if tty then term.add_history(buffer) end
            buffer = nil
            local res = { xpcall(chunk, traceback) }
            if res[1] then
                if #res > 1 or res[2] ~= nil then
                    local parts = {}
                    for i = 2, table.maxn(res) do parts[#parts + 1] = pretty.format(res[i]) end
                    io.stdout:write(table.concat(parts, "\t"), "\n")
                end
            else
                io.stderr:write(tostring(res[2]), "\n")
            end
            require("apr.core").C.apr_interrupt_clear()
        elseif not incomplete then
            if tty then term.add_history(buffer) end
            buffer = nil
            io.stderr:write(err, "\n")
        end
    end
    if hist then term.save_history(hist) end
    if tty then io.stdout:write("\n") end
    return 0
end

return M
