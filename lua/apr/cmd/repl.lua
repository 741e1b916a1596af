-- apr repl: an interactive Lua prompt with apr loaded.
local term = require "apr._term"
local pretty = require "apr._pretty"
local xdg = require "apr._xdg"

local M = {}

M.spec = {
    usage = "apr repl",
    summary = "Interactive Lua prompt with `apr` loaded (line editing on a terminal).",
    description = "Type Lua statements or expressions; expressions print their values.\n" ..
                  "A line that does not parse yet continues on the next (like lua's REPL).\n" ..
                  "History is kept in $XDG_STATE_HOME/apr/repl_history. Ctrl+D leaves.",
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
    while true do
        local line = term.readline(buffer and ">> " or "> ")
        if line == nil then break end
        buffer = buffer and (buffer .. "\n" .. line) or line
        local chunk, err, incomplete = compile(buffer)
        if chunk then
            if tty then term.add_history(buffer) end
            buffer = nil
            local res = { xpcall(chunk, debug.traceback) }
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
