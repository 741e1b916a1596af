-- trace.lua — spans from Lua, and a trace's outputs (docs/trace.md).
--
--   local trace = require "apr.trace"
--   trace.start({ kernels = true })
--   local RENDER = trace.name("template render")
--   trace.begin(RENDER) ... trace.finish(RENDER)
--   trace.stop()
--   trace.write("out/")          -- trace.json, trace.folded, trace.svg
--
-- The spans go into the runtime's per-thread rings (runtime/trace/), beside
-- the C spans and CUPTI's GPU kernels. While no trace is active, begin and
-- finish cost a test of one upvalue. The outputs are rendered from the
-- Chrome trace JSON the runtime writes (apr.trace.report), so `apr trace`
-- can add the syscalls of another process to the same files.
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

local on = C.apr_trace_enabled() ~= 0
local names = {}
local c_begin, c_end, c_complete = C.apr_trace_begin, C.apr_trace_end, C.apr_trace_complete

-- The id of a span name (interned once per process).
function M.name(s)
    local id = names[s]
    if not id then
        id = C.apr_trace_name(s)
        names[s] = id
    end
    return id
end

function M.enabled() return on end

function M.begin(id) if on then c_begin(id) end end
function M.finish(id) if on then c_end(id) end end

-- record(id, t0, t1): a span measured by the caller, t0 and t1 from
-- uv.hrtime() (the trace's clock), recorded when it ends. Such spans may
-- overlap without nesting (the requests of one event loop), so each goes on
-- the lowest lane of this thread whose last span ended before t0.
local lane_end = {}
function M.record(id, t0, t1)
    if not on then return end
    local lane = 1
    while lane_end[lane] and lane_end[lane] > t0 do lane = lane + 1 end
    lane_end[lane] = t1
    c_complete(id, lane, t0, t1 - t0)
end

local function close_span(id, ok, ...)
    c_end(id)
    if not ok then error((...), 0) end
    return ...
end

-- span(name, fn, ...) -> fn's results, inside a span (errors pass through,
-- the span closed).
function M.span(name, fn, ...)
    if not on then return fn(...) end
    local id = M.name(name)
    c_begin(id)
    return close_span(id, pcall(fn, ...))
end

-- start({ kernels = bool, ring = records per thread }) -> true, or nil and
-- the message. The trace's note about GPU kernels (why they are off) is in
-- M.info().kernels_note.
function M.start(opts)
    opts = opts or {}
    local p = ffi.new("apr_trace_params")
    C.apr_trace_params_default(p)
    p.kernels = opts.kernels and 1 or 0
    if opts.ring then p.ring_records = opts.ring end
    local st = C.apr_trace_start(p)
    if st ~= 0 then return nil, core.last_error() end
    C.apr_trace_thread_name("main")
    lane_end = {}
    on = true
    return true
end

function M.stop()
    C.apr_trace_stop()
    on = false
end

function M.info()
    local i = ffi.new("apr_trace_info")
    C.apr_trace_get_info(i)
    return {
        active = i.active ~= 0, kernels = i.kernels ~= 0, kernels_note = ffi.string(i.kernels_note),
        n_threads = i.n_threads, records = tonumber(i.records), overwritten = tonumber(i.overwritten),
        gpu_records = tonumber(i.gpu_records), gpu_dropped = tonumber(i.gpu_dropped),
    }
end

-- write_json(path, meta) -> true, or nil and the message. meta: a table of
-- strings and numbers for the file's otherData (the command line, ...).
function M.write_json(path, meta)
    local parts = {}
    local json = require "cjson"
    for k, v in pairs(meta or {}) do parts[#parts + 1] = json.encode(k) .. ":" .. json.encode(v) end
    table.sort(parts)
    local st = C.apr_trace_write_json(path, table.concat(parts, ","))
    if st ~= 0 then return nil, core.last_error() end
    return true
end

return M
