-- bench/serve_proc.lua — what the standalone server benchmarks
-- (bench/serve_load.lua, serve_flood.lua, serve_stall.lua) share: their
-- "--name value" options, and an `apr serve` of their own on a free port.
local uv = require "luv"

local M = {}

-- options(argv, opts [, usage]) fills opts from "--name value" pairs
-- (dashes in names become underscores, numbers become numbers) and the
-- flag --json; usage(why) is called on a malformed argument (default:
-- error). Returns opts.
function M.options(argv, opts, usage)
    usage = usage or error
    local i = 1
    while i <= #argv do
        local k = argv[i]:match("^%-%-(.+)$")
        if not k then usage("unexpected argument " .. argv[i]) end
        k = k:gsub("-", "_")
        if k == "json" then
            opts.json = true
        else
            i = i + 1
            local v = argv[i] or usage("--" .. k .. " needs a value")
            opts[k] = tonumber(v) or v
        end
        i = i + 1
    end
    return opts
end

-- start(model, words) runs `apr serve MODEL --port 0 WORDS...` (words: a
-- string of whitespace-separated arguments, a --serve "ARGS" value) and the
-- loop until the server says "model ready"; returns the process, its pid
-- and port. A server that exits before it is ready ends the script with
-- the tail of what it wrote.
function M.start(model, words)
    local argv = { "serve", model, "--port", "0" }
    for w in tostring(words or ""):gmatch("%S+") do argv[#argv + 1] = w end
    local exe = (rawget(_G, "APR_HOME") or ".") .. "/apr"
    local stderr = uv.new_pipe(false)
    local log, port = "", nil
    local proc, pid = uv.spawn(exe, { args = argv, stdio = { nil, nil, stderr } }, function(code)
        if not port then
            io.stderr:write("apr serve exited (", tostring(code), "):\n", log, "\n")
            os.exit(1)
        end
    end)
    if not proc then error("cannot start " .. exe .. ": " .. tostring(pid)) end
    stderr:read_start(function(_, data)
        if not data then return end
        -- the tail: a flood logs a line per rejected request
        log = log .. data
        if #log > 65536 then log = log:sub(-32768) end
        if not port and log:find("model ready", 1, true) then
            port = tonumber(log:match("port=(%d+)"))
            uv.stop()
        end
    end)
    uv.run("default")
    return proc, pid, port
end

return M
