-- apr run SCRIPT.lua [ARGS...]: run a Lua script with apr available.
local cli = require "apr.cli"

local M = {}

M.spec = {
    usage = "apr run SCRIPT.lua [ARGS...]",
    summary = "Run a Lua script with `require \"apr\"` available.",
    description = "The script gets its arguments in the global `arg` (arg[0] is the script,\n" ..
                  "arg[1..n] the rest), as with the standalone lua interpreter. It may\n" ..
                  "return an exit code or call os.exit().",
    positional = { min = 1, name = "SCRIPT" },
    stop_at_positional = true,
    examples = { "apr run demos/inspect_model.lua tests/fixtures/models/tiny-q8_0.gguf" },
}

-- The script's error with its traceback, up to the script's main chunk:
-- the frames below it are apr's own (this file, cli.lua).
local function script_traceback(e)
    local tb = debug.traceback(tostring(e), 2)
    return (tb:gsub("\n%s*%[C%]: in function 'xpcall'\n[^\n]*apr/cmd/run%.lua:.*$", ""))
end

function M.run(opts)
    local path = opts[1]
    local chunk, err = loadfile(path)
    if not chunk then cli.fail("%s", err) end
    local script_arg = { [0] = path }
    for i = 2, #opts do script_arg[i - 1] = opts[i] end
    _G.arg = script_arg
    local ok, result = xpcall(chunk, script_traceback, unpack(script_arg))
    if not ok then
        io.stderr:write(tostring(result), "\n")
        return 1
    end
    return type(result) == "number" and result or 0
end

return M
