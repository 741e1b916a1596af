-- report.lua — a trace folder's outputs, from the trace.json the runtime
-- wrote (and strace's log, when syscalls were traced):
--
--   trace.json     Chrome trace-event JSON (Perfetto, chrome://tracing),
--                  the syscalls added on tracks of their own
--   trace.folded   folded stacks, µs (flamegraph.pl, inferno, speedscope)
--   trace.svg      the semantic flamegraph (apr.trace.svg)
--   summary.txt    the table apr prints (apr.trace.summary)
local cjson = require "cjson.safe"
local groups = require "apr.trace.groups"
local stacks = require "apr.trace.stacks"
local strace = require "apr.trace.strace"

local M = {}

-- Tracks of the lanes (runtime/trace/trace.c lane_tid), of GPU streams, and
-- of each thread's syscalls (here).
local LANE_BASE, GPU_BASE, SYSCALL_BASE = 4194304, 1000000000, 1500000000

local function read(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("*a")
    f:close()
    return s
end

-- load(path) -> trace { events, threads = { [tid] = name }, meta }, or nil
-- and a message. Only X events are kept (the runtime writes no others but
-- metadata); ts and dur in µs from the trace's start.
function M.load(path)
    local text, err = read(path)
    if not text then return nil, err end
    local doc = cjson.decode(text)
    if type(doc) ~= "table" or type(doc.traceEvents) ~= "table" then
        return nil, path .. ": not a Chrome trace (no traceEvents array)"
    end
    local trace = { events = {}, threads = {}, meta = type(doc.otherData) == "table" and doc.otherData or {},
                    pid = nil }
    for _, e in ipairs(doc.traceEvents) do
        if type(e) == "table" then
            if e.ph == "X" and type(e.ts) == "number" and type(e.dur) == "number" then
                local tid = tonumber(e.tid) or 0
                trace.events[#trace.events + 1] = {
                    name = tostring(e.name or "?"), cat = e.cat or "span", ts = e.ts, dur = e.dur, tid = tid,
                    lane = e.cat == "span" and tid >= LANE_BASE and tid < GPU_BASE or nil, args = e.args,
                    group = type(e.args) == "table" and e.args.group or nil, path = type(e.args) == "table" and e.args.fd or nil,
                }
                trace.pid = trace.pid or e.pid
            elseif e.ph == "M" and e.name == "thread_name" and type(e.args) == "table" then
                trace.threads[tonumber(e.tid) or 0] = tostring(e.args.name)
            end
        end
    end
    return trace
end

-- An empty trace for a command that wrote none (it died first), so its
-- syscalls still make a report.
function M.empty(command)
    return { events = {}, threads = {}, meta = { command = command, duration_us = 0 }, pid = 0 }
end

-- add_syscalls(trace, calls) adds strace's calls (apr.trace.strace.parse)
-- as X events on a "<thread> syscalls" track per thread, on the trace's
-- clock (the realtime clock's reading at its start aligns them).
function M.add_syscalls(trace, calls)
    local meta = trace.meta
    local base = tonumber(meta.start_realtime_ns)
    if not base and calls[1] then
        base = calls[1].ts * 1e9
        meta.start_realtime_ns = base
    end
    base = (base or 0) / 1e3
    local last = 0
    for _, c in ipairs(calls) do
        local ts = c.ts * 1e6 - base
        local tid = SYSCALL_BASE + c.tid
        local g = groups.syscall(c.name, c.path)
        trace.events[#trace.events + 1] = {
            name = c.name, cat = "syscall", ts = ts, dur = c.dur * 1e6, tid = tid, group = g, path = c.path,
            args = { ret = c.ret, fd = c.path, group = g },
        }
        if not trace.threads[tid] then
            trace.threads[tid] = (trace.threads[c.tid] or ("thread " .. c.tid)) .. " syscalls"
        end
        if ts + c.dur * 1e6 > last then last = ts + c.dur * 1e6 end
    end
    meta.syscalls = #calls
    if (tonumber(meta.duration_us) or 0) < last then meta.duration_us = last end
end

-- Rewrites trace.json with every event (the syscalls added).
function M.write_chrome(trace, path)
    local f, err = io.open(path .. ".tmp", "wb")
    if not f then return nil, err end
    local pid = trace.pid or 0
    f:write('{"traceEvents":[\n')
    local first = true
    local function put(obj)
        f:write(first and "" or ",\n", cjson.encode(obj))
        first = false
    end
    put({ ph = "M", pid = pid, tid = pid, name = "process_name", args = { name = "apr" } })
    for tid, name in pairs(trace.threads) do put({ ph = "M", pid = pid, tid = tid, name = "thread_name", args = { name = name } }) end
    for _, e in ipairs(trace.events) do
        put({ ph = "X", pid = pid, tid = e.tid, cat = e.cat, name = e.name, ts = e.ts, dur = e.dur, args = e.args })
    end
    f:write('\n],\n"displayTimeUnit":"ms",\n"otherData":', cjson.encode(trace.meta), "}\n")
    local ok, werr = f:close()
    if not ok then return nil, werr end
    return os.rename(path .. ".tmp", path)
end

-- The summary as JSON: the tree's first three levels (µs, counts), the
-- wall time, GPU busy time and the decode steps' coverage.
function M.summary_json(trace, tree)
    local steps = require "apr.trace.steps"
    local function walk(n, depth)
        local out = { name = n.name, us = n.value, self_us = n.self, count = n.count }
        if depth < 3 and #n.order > 0 then
            out.children = {}
            for _, name in ipairs(n.order) do out.children[#out.children + 1] = walk(n.children[name], depth + 1) end
        end
        return out
    end
    local cov = steps.coverage(trace)
    cov.shares = nil
    local busy, n_gpu = steps.busy(trace)
    return cjson.encode({
        command = trace.meta.command, wall_us = tonumber(trace.meta.duration_us) or 0, groups = walk(tree, 0).children,
        gpu_busy_us = busy, gpu_records = n_gpu, decode_steps = cov, kernels_note = trace.meta.kernels_note,
        syscalls = trace.meta.syscalls,
    }) .. "\n"
end

local function write(path, text)
    local f, err = io.open(path, "wb")
    if not f then return nil, err end
    local ok, werr = f:write(text)
    if ok then ok, werr = f:close() else f:close() end
    if not ok then return nil, werr end
    return true
end

-- render(dir, opts) -> summary text, or nil and a message. opts: strace_log
-- (strace's output file, parsed and added), command (for the titles),
-- missing_ok (a command that wrote no trace.json still gets a report of
-- its syscalls).
function M.render(dir, opts)
    opts = opts or {}
    local json_path = dir .. "/trace.json"
    local trace, err = M.load(json_path)
    if not trace then
        if not opts.missing_ok then return nil, err end
        trace = M.empty(opts.command)
    end
    trace.meta.command = trace.meta.command or opts.command
    if opts.strace_log then
        local calls, serr = strace.parse_file(opts.strace_log)
        if not calls then return nil, "reading strace's log: " .. tostring(serr) end
        M.add_syscalls(trace, calls)
        local ok, werr = M.write_chrome(trace, json_path)
        if not ok then return nil, "writing " .. json_path .. ": " .. tostring(werr) end
    end
    local tree = stacks.build(trace)
    local ok, werr = write(dir .. "/trace.folded", stacks.folded(tree))
    if not ok then return nil, werr end
    local wall = tonumber(trace.meta.duration_us) or tree.value
    local svg_text = require("apr.trace.svg").render(tree, {
        title = "apr trace" .. (trace.meta.command and (": " .. trace.meta.command) or ""),
        subtitle = string.format("%s wall time. Boxes: time in each group (they overlap). Hover for details, click to zoom.",
            require("apr.trace.svg").fmt_time(wall)),
        wall_us = wall,
    })
    ok, werr = write(dir .. "/trace.svg", svg_text)
    if not ok then return nil, werr end
    local text = require("apr.trace.summary").text(trace, tree)
    ok, werr = write(dir .. "/summary.txt", text)
    if ok then ok, werr = write(dir .. "/summary.json", M.summary_json(trace, tree)) end
    if not ok then return nil, werr end
    return text, trace, tree
end

return M
