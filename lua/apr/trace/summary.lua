-- summary.lua — the terminal table of a trace: each group's time and its
-- share of the run's wall time, the busiest frames, and the decode steps.
local steps = require "apr.trace.steps"
local svg = require "apr.trace.svg"

local M = {}

local fmt_time, fmt_count = svg.fmt_time, svg.fmt_count

local function sorted_children(n)
    local list = {}
    for _, name in ipairs(n.order) do list[#list + 1] = n.children[name] end
    table.sort(list, function(a, b) return a.value > b.value end)
    return list
end

-- The deepest frames by their own time, over a subtree: { path, self }.
local function top_self(n, prefix, out)
    local path = prefix and (prefix .. " > " .. n.name) or n.name
    if n.self > 0 then out[#out + 1] = { path = path, self = n.self, count = n.count } end
    for _, name in ipairs(n.order) do top_self(n.children[name], path, out) end
    return out
end

-- text(trace, tree, opts) -> the table (lines ending in \n). opts.top: rows per group (5).
function M.text(trace, tree, opts)
    opts = opts or {}
    local top = opts.top or 5
    local meta = trace.meta or {}
    local wall = tonumber(meta.duration_us) or 0
    local lines = {}
    local function put(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
    local n_spans, n_kernels, n_sys = 0, 0, 0
    for _, e in ipairs(trace.events) do
        if e.cat == "span" then n_spans = n_spans + 1
        elseif e.cat == "kernel" then n_kernels = n_kernels + 1
        elseif e.cat == "syscall" then n_sys = n_sys + 1 end
    end
    put("apr trace%s: %s wall; %s spans, %s GPU kernels, %s syscalls",
        meta.command and (" of `" .. meta.command .. "`") or "", fmt_time(wall), fmt_count(n_spans),
        fmt_count(n_kernels), fmt_count(n_sys))
    put("%-44s %12s %8s %10s", "group", "time", "of wall", "count")
    local function row(depth, name, value, count)
        local label = string.rep("  ", depth) .. name
        if #label > 44 then label = label:sub(1, 42) .. ".." end
        put("%-44s %12s %7.1f%% %10s", label, fmt_time(value), wall > 0 and 100 * value / wall or 0,
            count and count > 0 and fmt_count(count) or "")
    end
    local function count_of(n)
        local c = n.count
        for _, name in ipairs(n.order) do c = c + count_of(n.children[name]) end
        return c
    end
    for _, g in ipairs(sorted_children(tree)) do
        row(0, g.name, g.value, count_of(g))
        local kids = sorted_children(g)
        if g.name == "CPU" then
            -- threads, then each thread's busiest frames by self time
            for _, t in ipairs(kids) do
                row(1, t.name, t.value, count_of(t))
                local frames = top_self(t, nil, {})
                table.sort(frames, function(a, b) return a.self > b.self end)
                for i = 1, math.min(3, #frames) do
                    local p = frames[i].path:gsub("^[^>]* > ", "")
                    row(2, p .. " (self)", frames[i].self, frames[i].count)
                end
            end
        else
            local shown, rest, rest_n = 0, 0, 0
            for _, c in ipairs(kids) do
                if shown < top then
                    row(1, c.name, c.value, count_of(c))
                    shown = shown + 1
                    if g.name == "GPU kernels" then
                        local k = sorted_children(c)
                        for i = 1, math.min(2, #k) do row(2, k[i].name, k[i].value, count_of(k[i])) end
                    end
                else
                    rest, rest_n = rest + c.value, rest_n + count_of(c)
                end
            end
            if rest > 0 then row(1, "(others)", rest, rest_n) end
        end
    end
    local busy, n_gpu = steps.busy(trace)
    if n_gpu > 0 then put("GPU busy (any kernel or copy running): %s, %.1f%% of wall", fmt_time(busy),
        wall > 0 and 100 * busy / wall or 0) end
    local cov = steps.coverage(trace)
    if cov.steps > 0 then
        put("decode steps: %s, %s each on average%s", fmt_count(cov.steps), fmt_time(cov.step_us / cov.steps),
            n_gpu > 0 and string.format("; GPU busy %.1f%% of them (kernels %s, sum %.1f%%, least %.1f%%), %d unnamed",
                cov.step_us > 0 and 100 * cov.busy_us / cov.step_us or 0, fmt_count(cov.kernels),
                cov.step_us > 0 and 100 * cov.sum_us / cov.step_us or 0, 100 * (cov.min_share or 0), cov.unnamed)
            or "")
    end
    put("(groups overlap in time and threads run side by side: the CPU waits while the GPU works, a syscall's time " ..
        "includes its wait (an idle thread's futex, the event loop's epoll_wait); shares may add up past 100%%)")
    if meta.kernels_note and meta.kernels_note ~= "" then put("note: GPU kernels not recorded: %s", meta.kernels_note) end
    local lost = tonumber(meta.span_records_overwritten) or 0
    if lost > 0 then put("note: %s oldest span records were overwritten (full rings): the start is missing", fmt_count(lost)) end
    local dropped = tonumber(meta.gpu_dropped) or 0
    if dropped > 0 then put("note: %s GPU records were dropped", fmt_count(dropped)) end
    return table.concat(lines, "\n") .. "\n"
end

return M
