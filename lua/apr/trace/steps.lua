-- steps.lua — how much of each decode step the GPU's kernels fill.
--
-- A decode step is the span "decode step" (runtime/model/context.c: an
-- apr_decode whose every token wants logits), from the CPU's call to its
-- results being back. The kernels and copies that ran inside it (by
-- CUPTI's timestamps, on the trace's clock) are summed two ways: busy, the
-- union of their intervals clipped to the step (overlapping kernels count
-- once), and sum, their durations added. busy / step is the share of the
-- step the GPU was working: the rest is launch latency, copies' setup and
-- the CPU's own work.
local M = {}

-- Union length of sorted intervals (a list of {s, e}).
local function union(iv)
    table.sort(iv, function(a, b) return a[1] < b[1] end)
    local total, cs, ce = 0, nil, nil
    for _, v in ipairs(iv) do
        if not cs then
            cs, ce = v[1], v[2]
        elseif v[1] > ce then
            total = total + (ce - cs)
            cs, ce = v[1], v[2]
        elseif v[2] > ce then
            ce = v[2]
        end
    end
    if cs then total = total + (ce - cs) end
    return total
end
M.union = union

-- coverage(trace [, span_name]) -> { steps, step_us, busy_us, sum_us,
-- kernels, unnamed, min_share, shares = {...} } over every span named
-- span_name ("decode step").
function M.coverage(trace, span_name)
    span_name = span_name or "decode step"
    local gpu, steps = {}, {}
    for _, e in ipairs(trace.events) do
        if e.cat == "kernel" or e.cat == "memcpy" or e.cat == "memset" then
            gpu[#gpu + 1] = e
        elseif e.cat == "span" and e.name == span_name then
            steps[#steps + 1] = e
        end
    end
    table.sort(gpu, function(a, b) return a.ts < b.ts end)
    local r = { steps = #steps, step_us = 0, busy_us = 0, sum_us = 0, kernels = 0, unnamed = 0, min_share = nil,
                shares = {} }
    local first = 1
    table.sort(steps, function(a, b) return a.ts < b.ts end)
    for _, s in ipairs(steps) do
        local s0, s1 = s.ts, s.ts + s.dur
        while first <= #gpu and gpu[first].ts + gpu[first].dur < s0 do first = first + 1 end
        local iv = {}
        local i = first
        while i <= #gpu and gpu[i].ts < s1 do
            local g = gpu[i]
            local a, b = math.max(g.ts, s0), math.min(g.ts + g.dur, s1)
            if b > a then
                iv[#iv + 1] = { a, b }
                r.sum_us = r.sum_us + (b - a)
                if g.cat == "kernel" then
                    r.kernels = r.kernels + 1
                    if not g.name or g.name == "" or g.name == "?" then r.unnamed = r.unnamed + 1 end
                end
            end
            i = i + 1
        end
        local busy = union(iv)
        r.busy_us = r.busy_us + busy
        r.step_us = r.step_us + s.dur
        local share = s.dur > 0 and busy / s.dur or 0
        r.shares[#r.shares + 1] = share
        if not r.min_share or share < r.min_share then r.min_share = share end
    end
    return r
end

-- busy(trace) -> µs during which any kernel or copy ran.
function M.busy(trace)
    local iv = {}
    for _, e in ipairs(trace.events) do
        if e.cat == "kernel" or e.cat == "memcpy" or e.cat == "memset" then iv[#iv + 1] = { e.ts, e.ts + e.dur } end
    end
    return union(iv), #iv
end

return M
