-- apr trace -- apr COMMAND ...: where the time of an apr command goes.
local cli = require "apr.cli"

local M = {}

M.spec = {
    usage = "apr trace [--output DIR] [--syscalls] [--kernels] -- apr COMMAND [ARGS...]",
    summary = "Run an apr command and show where its time goes: spans, GPU kernels, syscalls.",
    description =
        "Runs the command with tracing on and writes into DIR: trace.json (Chrome trace-event\n" ..
        "format: open it in Perfetto or chrome://tracing), trace.svg (a flamegraph grouped as\n" ..
        "GPU kernels / Memory / CPU / Syscalls / Requests: hover, search, click to zoom),\n" ..
        "trace.folded (folded stacks for flamegraph.pl or inferno), summary.txt and\n" ..
        "summary.json; the summary table also goes to stderr. Spans come from apr itself\n" ..
        "(model load, tokenize, template render, prefill, decode step, sample, detokenize,\n" ..
        "HTTP requests, engine steps, copies); --kernels adds every GPU kernel and copy as\n" ..
        "CUPTI times them (CUDA builds, needs libcupti); --syscalls adds every thread's\n" ..
        "syscalls through strace (slows the command: each call stops twice). The command's\n" ..
        "stdin, stdout and exit code pass through; Ctrl+C reaches it (apr serve drains and\n" ..
        "exits, and the trace is still written).",
    positional = { min = 1, name = "COMMAND" },
    stop_at_positional = true,
    options = {
        { "output", short = "o", value = "DIR", default = "apr-trace", help = "where the trace and its views go" },
        { "syscalls", help = "record every thread's syscalls (strace)" },
        { "kernels", help = "record GPU kernels, copies and memsets (CUPTI)" },
        { "ring", value = "N", type = "integer", min = 16, max = 2 ^ 28,
          help = "span records kept per thread (the oldest are overwritten past it) [default: 1048576]" },
    },
    examples = {
        "apr trace -- apr pass --prompt 'def quicksort(xs):' --max-tokens 64",
        "apr trace --kernels --output /tmp/t -- apr pass model.gguf --gpu -p 'Hi'",
        "apr trace --syscalls -- apr serve model.gguf --port 8080     (Ctrl+C to stop)",
    },
}

local OUTPUTS = { "trace.json", "trace.folded", "trace.svg", "summary.txt", "summary.json", "strace.log" }

local function absolute(path)
    if path:sub(1, 1) == "/" then return path end
    return require("luv").cwd() .. "/" .. path
end

-- The program to run: `apr` (or a bare command name) is this apr; a path
-- is taken as another apr binary (dist/apr/apr).
local function program(argv)
    local uv = require "luv"
    local first = argv[1]
    if first == "apr" then
        argv[1] = uv.exepath()
    elseif not first:find("/") then
        if not cli.load_command(first) then
            require("apr.cli.args").usage_error("'%s' is not an apr command: apr trace runs apr commands " ..
                "(apr trace -- apr pass ...)", first)
        end
        table.insert(argv, 1, uv.exepath())
    elseif not uv.fs_access(first, "X") then
        cli.fail("cannot run %s", first)
    end
    return argv
end

local function quote(words)
    local out = {}
    for i, a in ipairs(words) do
        if i == 1 then a = "apr" end
        out[i] = a:find("[%s'\"]") and ("'" .. a:gsub("'", "'\\''") .. "'") or a
    end
    return table.concat(out, " ")
end

function M.run(opts)
    local uv = require "luv"
    local session = require "apr.trace.session"
    local report = require "apr.trace.report"
    local argv = {}
    for i = 1, #opts do argv[i] = opts[i] end
    argv = program(argv)
    local command = quote(argv)

    local dir = opts.output
    local ok, err = session.make_dir(dir)
    if not ok then cli.fail("%s", err) end
    dir = absolute(dir)
    -- an old trace must not pass for this run's
    for _, f in ipairs(OUTPUTS) do os.remove(dir .. "/" .. f) end

    local file, args = argv[1], {}
    if opts.syscalls then
        local strace_bin = require("apr.trace.strace").find()
        if not strace_bin then cli.fail("--syscalls needs strace (apt-get install strace)") end
        for _, a in ipairs(require("apr.trace.strace").args(dir .. "/strace.log")) do args[#args + 1] = a end
        args[#args + 1] = file
        file = strace_bin
    end
    for i = 2, #argv do args[#args + 1] = argv[i] end

    local env = {}
    for k, v in pairs(uv.os_environ()) do
        if k ~= "APR_TRACE_DIR" and k ~= "APR_TRACE_KERNELS" and k ~= "APR_TRACE_RING" then env[#env + 1] = k .. "=" .. v end
    end
    env[#env + 1] = "APR_TRACE_DIR=" .. dir
    env[#env + 1] = "APR_TRACE_KERNELS=" .. (opts.kernels and "1" or "0")
    if opts.ring then env[#env + 1] = "APR_TRACE_RING=" .. opts.ring end

    -- Ctrl+C goes to the whole foreground group: the command handles it;
    -- we wait for it to finish writing its trace.
    local sigint = uv.new_signal()
    sigint:start("sigint", function() end)
    local sigterm = uv.new_signal()
    local child
    sigterm:start("sigterm", function() if child then child:kill("sigterm") end end)
    local exit_code, exit_signal
    local handle, perr = uv.spawn(file, { args = args, env = env, stdio = { 0, 1, 2 } }, function(code, signal)
        exit_code, exit_signal = code, signal
        sigint:close()
        sigterm:close()
    end)
    if not handle then
        sigint:close()
        sigterm:close()
        cli.fail("cannot run %s: %s", file, tostring(perr))
    end
    child = handle
    uv.run("default")
    handle:close()

    local status = exit_signal and exit_signal > 0 and 128 + exit_signal or exit_code or 1
    local text, trace_or_err = report.render(dir, {
        strace_log = opts.syscalls and (dir .. "/strace.log") or nil, command = command, missing_ok = true,
    })
    if not text then cli.fail("%s", tostring(trace_or_err)) end
    io.stderr:write(text)
    if trace_or_err.meta.apr_trace == nil then
        io.stderr:write(string.format("note: the command wrote no trace of its own (it %s)\n",
            exit_signal and exit_signal > 0 and ("was killed by signal " .. exit_signal) or ("exited with " .. tostring(exit_code))))
    end
    io.stderr:write("trace: ", dir, "/trace.svg (flamegraph), trace.json (Perfetto), trace.folded, summary.txt\n")
    return status
end

return M
