-- session.lua — tracing one apr command from start to end (cli.lua opens
-- and closes it around the command's run).
--
-- Two ways in:
--  - `--trace DIR` on a command that takes it (pass, chat, serve, ...: add
--    M.OPTION to its options): spans, and GPU kernels when the command
--    runs on a GPU; at the end the outputs are rendered into DIR and the
--    summary goes to stderr.
--  - APR_TRACE_DIR=DIR in the environment, set by `apr trace` for the
--    command it runs (any command): the trace is written as DIR/trace.json
--    and `apr trace` renders it, with the syscalls it recorded from outside.
--    APR_TRACE_KERNELS=1 asks for GPU kernels; APR_TRACE_RING sets the
--    records per thread.
local trace = require "apr.trace"

local M = {}

M.OPTION = { "trace", value = "DIR",
             help = "record where this run's time goes into DIR (spans; GPU kernels on a GPU; see apr trace)" }

local Session = {}
Session.__index = Session

-- mkdir -p
function M.make_dir(dir)
    local uv = require "luv"
    local path = dir:sub(1, 1) == "/" and "" or "."
    for part in dir:gmatch("[^/]+") do
        path = path .. "/" .. part
        local st = uv.fs_stat(path)
        if not st then
            local ok, err = uv.fs_mkdir(path, 493)  -- 0755
            if not ok and not tostring(err):find("EEXIST") then return nil, string.format("cannot create %s: %s", path, err) end
        elseif st.type ~= "directory" then
            return nil, string.format("%s is not a directory", path)
        end
    end
    return true
end

local function on_gpu(opts)
    if opts.device == "cpu" then return false end
    local C = require("apr.core").C
    return C.apr_cuda_compiled() ~= 0 and C.apr_device_count() > 0
end

-- open(name, argv, opts) -> a session, or nil when no trace is asked for.
-- Fails (cli.fail) when the folder cannot be made or a trace cannot start.
function M.open(name, argv, opts)
    local cli = require "apr.cli"
    local env_dir = os.getenv("APR_TRACE_DIR")
    local dir = opts.trace or (env_dir ~= "" and env_dir) or nil
    if not dir then return nil end
    local child = opts.trace == nil
    if not child then
        local ok, err = M.make_dir(dir)
        if not ok then cli.fail("--trace: %s", err) end
    end
    local kernels
    if child then kernels = os.getenv("APR_TRACE_KERNELS") == "1" else kernels = on_gpu(opts) end
    local ring = tonumber(os.getenv("APR_TRACE_RING") or "")
    local ok, err = trace.start({ kernels = kernels, ring = ring })
    if not ok then cli.fail("trace: %s", err) end
    local words = { "apr", name }
    for _, a in ipairs(argv) do words[#words + 1] = a:find("[%s'\"]") and ("'" .. a:gsub("'", "'\\''") .. "'") or a end
    local s = setmetatable({ dir = dir, child = child, root = trace.name("apr " .. name),
                             command = table.concat(words, " ") }, Session)
    trace.begin(s.root)
    return s
end

-- close(exit_code): ends the trace and writes it (a failure to write is
-- reported on stderr; the command's own exit code stands).
function Session:close(code)
    trace.finish(self.root)
    trace.stop()
    local path = self.dir .. "/trace.json"
    local ok, err = trace.write_json(path, { command = self.command, exit_code = code or 0 })
    if not ok then
        io.stderr:write("apr: trace: ", err, "\n")
        return
    end
    if self.child then return end
    local text, rerr = require("apr.trace.report").render(self.dir, { command = self.command })
    if not text then
        io.stderr:write("apr: trace: ", tostring(rerr), "\n")
        return
    end
    io.stderr:write(text, "trace: ", self.dir, "/trace.svg (flamegraph), trace.json (Perfetto), trace.folded, summary.txt\n")
end

return M
