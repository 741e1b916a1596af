-- trace_gpu_check.lua — issue 14's GPU acceptance, on a trace that
-- `apr trace --kernels` wrote: every kernel is named, and the kernels of
-- each decode step fill at least 90% of it (the GPU busy, by the union of
-- the kernels' and copies' intervals inside the step; their plain sum too).
-- The first decode step records the step's CUDA graph (the GPU waits while
-- the CPU captures it), so it is shown apart and the check is on the rest.
--
--   apr run bench/trace_gpu_check.lua DIR [--min 0.90]
-- Prints a table; exit 0 when the checks pass, 1 otherwise.
local report = require "apr.trace.report"
local steps = require "apr.trace.steps"

local dir = arg[1] or (io.stderr:write("usage: apr run bench/trace_gpu_check.lua DIR [--min 0.90]\n") and os.exit(2))
local min_share = 0.90
for i = 2, #arg do if arg[i] == "--min" then min_share = tonumber(arg[i + 1]) end end

local trace, err = report.load(dir .. "/trace.json")
if not trace then io.stderr:write(err, "\n") os.exit(1) end

local kernels, unnamed, names = 0, 0, {}
for _, e in ipairs(trace.events) do
    if e.cat == "kernel" then
        kernels = kernels + 1
        if e.name == "" or e.name == "?" or e.name == "(unnamed kernel)" then unnamed = unnamed + 1 end
        names[e.name] = (names[e.name] or 0) + 1
    end
end

-- every decode step, then all but the first
local all = steps.coverage(trace)
local later = { events = {} }
local first_ts
for _, e in ipairs(trace.events) do
    if e.cat == "span" and e.name == "decode step" and (not first_ts or e.ts < first_ts) then first_ts = e.ts end
end
for _, e in ipairs(trace.events) do
    if not (e.cat == "span" and e.name == "decode step" and e.ts == first_ts) then later.events[#later.events + 1] = e end
end
local rest = steps.coverage(later)

local function pct(a, b) return b > 0 and 100 * a / b or 0 end
local lines = {
    string.format("kernels recorded: %d (%d distinct names, %d unnamed); GPU records dropped: %s",
        kernels, (function() local n = 0 for _ in pairs(names) do n = n + 1 end return n end)(), unnamed,
        tostring(trace.meta.gpu_dropped)),
    string.format("%-28s %6s %12s %10s %10s %10s", "decode steps", "count", "ms each", "GPU busy", "kernel sum", "least"),
    string.format("%-28s %6d %12.3f %9.1f%% %9.1f%% %9.1f%%", "all", all.steps, all.step_us / math.max(all.steps, 1) / 1e3,
        pct(all.busy_us, all.step_us), pct(all.sum_us, all.step_us), 100 * (all.min_share or 0)),
    string.format("%-28s %6d %12.3f %9.1f%% %9.1f%% %9.1f%%", "after the first (graph)", rest.steps,
        rest.step_us / math.max(rest.steps, 1) / 1e3, pct(rest.busy_us, rest.step_us), pct(rest.sum_us, rest.step_us),
        100 * (rest.min_share or 0)),
    string.format("kernels per decode step: %.1f", all.kernels / math.max(all.steps, 1)),
}
local ok = kernels > 0 and unnamed == 0 and rest.steps > 0 and rest.busy_us >= min_share * rest.step_us
lines[#lines + 1] = string.format("%s: every kernel named, decode steps' kernels >= %.0f%% of the steps (%.1f%%)",
    ok and "PASS" or "FAIL", 100 * min_share, pct(rest.busy_us, rest.step_us))
io.stdout:write(table.concat(lines, "\n"), "\n")
os.exit(ok and 0 or 1)
