-- bench/harness.lua — the measurement protocol of `apr bench`.
--
-- For each concurrency level: every system first gets its warm-up runs
-- (excluded from the results), then the measured runs, the systems taking
-- turns within each run and the order rotated from one run to the next
-- (run 1: A B C, run 2: B C A, ...), so that a slow drift of the machine
-- (clocks, temperature, a neighbour) falls on every system alike. Only one
-- system is measured at a time. Run i sends every system the same
-- prompt(s): at concurrency c, c streams at once, prompts i*c+1 .. i*c+c of
-- the set (cycling).
--
-- A run's figures (see request_figures and run_figures): time to first
-- token, decode rate per stream, throughput of all streams, inter-token
-- latency p50/p99, prompt rate, end-to-end latency, and what the GPU and
-- the server process did meanwhile.
local task = require "apr.bench.task"
local stats = require "apr.bench.stats"

local M = {}

-- The figures of a run, with the direction that is better (for the
-- comparisons) and how tables print them.
M.METRICS = {
    { key = "decode_tps", label = "decode", unit = "tok/s", higher = true,
      about = "decode rate of each stream: (tokens - 1) / (last token - first token), the streams' mean" },
    { key = "throughput_tps", label = "throughput", unit = "tok/s", higher = true,
      about = "tokens of all the run's streams / the run's wall time" },
    { key = "ttft_s", label = "TTFT", unit = "s", higher = false,
      about = "time to first token: request sent to first piece of text, the streams' mean" },
    { key = "itl_p50_ms", label = "ITL p50", unit = "ms", higher = false,
      about = "median gap between pieces of text (all streams of the run)" },
    { key = "itl_p99_ms", label = "ITL p99", unit = "ms", higher = false,
      about = "99th percentile of the gaps between pieces of text" },
    { key = "prompt_tps", label = "prompt", unit = "tok/s", higher = true,
      about = "prompt tokens / time to first token, the streams' mean" },
    { key = "e2e_s", label = "latency", unit = "s", higher = false,
      about = "end-to-end latency of a request (sent to last byte), the streams' mean" },
    { key = "gpu_mem_bytes", label = "GPU mem", unit = "bytes", higher = false,
      about = "device memory the server holds (its process, at most during the run)" },
    { key = "rss_bytes", label = "RSS", unit = "bytes", higher = false,
      about = "the server process's resident memory at its peak (VmHWM)" },
}

local function mean_of(list, key)
    local xs = {}
    for _, r in ipairs(list) do if r[key] then xs[#xs + 1] = r[key] end end
    return stats.mean(xs)
end

-- The figures of one streamed request (client.stream's record).
function M.request_figures(s)
    local f = { ok = s.ok, error = s.error, finish_reason = s.finish_reason }
    if not s.ok then return f end
    local ev = s.events
    f.pieces = #ev
    local usage = type(s.usage) == "table" and s.usage or {}
    local o = type(s.ollama) == "table" and s.ollama or nil
    f.tokens = tonumber(usage.completion_tokens) or (o and tonumber(o.eval_count)) or #ev
    f.prompt_tokens = tonumber(usage.prompt_tokens) or (o and tonumber(o.prompt_eval_count)) or nil
    f.e2e_s = s.t_end - s.t0
    if ev[1] then f.ttft_s = ev[1] - s.t0 end
    if #ev >= 2 and f.tokens >= 2 and ev[#ev] > ev[1] then
        f.decode_tps = (f.tokens - 1) / (ev[#ev] - ev[1])
    end
    f.gaps_ms = {}
    for i = 2, #ev do f.gaps_ms[i - 1] = (ev[i] - ev[i - 1]) * 1000 end
    if f.prompt_tokens and f.ttft_s and f.ttft_s > 0 then f.prompt_tps = f.prompt_tokens / f.ttft_s end
    -- What the server says of itself (llama-server's timings, Ollama's durations).
    local t = type(s.timings) == "table" and s.timings or nil
    if t then
        f.server_decode_tps = tonumber(t.predicted_per_second)
        f.server_prompt_tps = tonumber(t.prompt_per_second)
    elseif o then
        local ed, pd = tonumber(o.eval_duration), tonumber(o.prompt_eval_duration)
        if ed and ed > 0 and o.eval_count then f.server_decode_tps = o.eval_count / (ed / 1e9) end
        if pd and pd > 0 and o.prompt_eval_count then f.server_prompt_tps = o.prompt_eval_count / (pd / 1e9) end
        f.server_load_s = tonumber(o.load_duration) and o.load_duration / 1e9 or nil
    end
    return f
end

-- One run of sys: the streams at once, the GPU sampled meanwhile.
function M.measure(sys, list, cfg, mon)
    local proc = sys.proc
    local cpu0 = proc and proc:cpu_seconds()
    mon:begin({ pids = sys.pid and { sys.pid } or {} })
    local t_start = task.now()
    local fns = {}
    for j, item in ipairs(list) do fns[j] = function() return sys:stream(item, cfg) end end
    local records = task.all(fns)
    local wall = task.now() - t_start
    local g = mon:finish()
    local run = { wall_s = wall, requests = {}, streams = #list }
    local gaps, tokens, prompt_tokens, failed = {}, 0, 0, 0
    for j, s in ipairs(records) do
        local f = M.request_figures(s)
        run.requests[j] = f
        if f.ok then
            tokens = tokens + (f.tokens or 0)
            prompt_tokens = prompt_tokens + (f.prompt_tokens or 0)
            for _, gap in ipairs(f.gaps_ms) do gaps[#gaps + 1] = gap end
        else
            failed = failed + 1
            run.error = run.error or f.error
        end
    end
    run.ok = failed == 0
    run.failed_requests = failed
    run.tokens, run.prompt_tokens = tokens, prompt_tokens
    run.throughput_tps = wall > 0 and tokens / wall or nil
    run.ttft_s = mean_of(run.requests, "ttft_s")
    run.decode_tps = mean_of(run.requests, "decode_tps")
    run.prompt_tps = mean_of(run.requests, "prompt_tps")
    run.e2e_s = mean_of(run.requests, "e2e_s")
    run.server_decode_tps = mean_of(run.requests, "server_decode_tps")
    run.server_prompt_tps = mean_of(run.requests, "server_prompt_tps")
    local sorted = stats.sorted(gaps)
    run.itl_p50_ms = stats.quantile(sorted, 0.5, true)
    run.itl_p99_ms = stats.quantile(sorted, 0.99, true)
    run.gaps_ms = gaps
    if g then
        run.gpu_util_mean, run.gpu_util_max = g.util_mean, g.util_max
        run.sm_clock_min, run.sm_clock_mean, run.sm_clock_max = g.sm_clock_min, g.sm_clock_mean, g.sm_clock_max
        run.temp_mean, run.temp_max = g.temp_mean, g.temp_max
        run.power_mean_w = g.power_mean_w
        run.gpu_mem_used_max = g.mem_used_max
        run.throttle_reasons = g.throttle_reasons
        run.gpu_samples = g.samples
        if sys.pid and g.process_mem_max[sys.pid] then
            run.gpu_mem_bytes = g.process_mem_max[sys.pid]
            run.gpu_mem_source = "NVML process list (" .. mon.source .. "), the run's peak"
        end
    end
    if not run.gpu_mem_bytes and mon.available then
        local b, source = sys:gpu_memory(mon)
        if b then
            run.gpu_mem_bytes, run.gpu_mem_source = b, source
        elseif g and g.mem_used_max and cfg.device_memory_base and sys.launch_memory then
            -- The device's peak during the run, less what was there before any
            -- server and what the other servers took at their launch.
            local others = 0
            for _, o in ipairs(cfg.systems or {}) do
                if o ~= sys and o.launch_memory then others = others + o.launch_memory end
            end
            run.gpu_mem_bytes = math.max(0, g.mem_used_max - cfg.device_memory_base - others)
            run.gpu_mem_source = "device memory in use during the run less the rest (" .. tostring(source) .. ")"
        else
            run.gpu_mem_source = "unavailable: " .. tostring(source)
        end
    end
    if proc then
        local mem = proc:memory()
        if mem then run.rss_bytes = mem.hwm end
        local cpu1 = proc:cpu_seconds()
        if cpu0 and cpu1 then run.cpu_seconds = cpu1 - cpu0 end
    end
    return run
end

-- The prompts of run i (1-based; warm-ups use i <= 0) at concurrency c.
local function prompts_of(set, i, c)
    local list, n = {}, #set
    for j = 1, c do list[j] = set[((i - 1) * c + j - 1) % n + 1] end
    return list
end

-- Rotation r of the systems (0-based): r = 1 starts with the second.
local function rotated(systems, r)
    local out, n = {}, #systems
    for k = 1, n do out[k] = systems[(r + k - 1) % n + 1] end
    return out
end

local function alive(sys)
    return sys.status == "ready" and not (sys.proc and sys.proc.exited)
end

local function died(sys)
    if sys.status == "ready" and sys.proc and sys.proc.exited then
        sys.status = "failed"
        sys.reason = string.format("the server exited during the benchmark (code %s):\n%s",
            tostring(sys.proc.exit_code), sys.proc:log_tail(10))
    end
end

-- run(systems, cfg, set, mon, progress [, results]) -> results[id][c] =
-- { runs, warmup } plus results.stability when cfg.duration is set. Fills
-- the results table given as it goes, so an interrupted benchmark keeps
-- what it measured.
function M.run(systems, cfg, set, mon, progress, results)
    results = results or {}
    for _, sys in ipairs(systems) do results[sys.id] = {} end
    local n_levels = #cfg.concurrency
    for li, c in ipairs(cfg.concurrency) do
        for _, sys in ipairs(systems) do results[sys.id][c] = { runs = {}, warmup = { runs = 0, failed = 0 } } end
        for w = 1, cfg.warmup do
            for _, sys in ipairs(systems) do
                if alive(sys) then
                    progress(string.format("concurrency %d (%d/%d): warm-up %d/%d, %s", c, li, n_levels, w, cfg.warmup, sys.name))
                    local run = M.measure(sys, prompts_of(set.list, w - cfg.warmup, c), cfg, mon)
                    local wu = results[sys.id][c].warmup
                    wu.runs = wu.runs + 1
                    if not run.ok then wu.failed, wu.error = wu.failed + 1, run.error end
                    died(sys)
                end
            end
        end
        for r = 1, cfg.runs do
            for pos, sys in ipairs(rotated(systems, r - 1)) do
                if alive(sys) then
                    progress(string.format("concurrency %d (%d/%d): run %d/%d, %s", c, li, n_levels, r, cfg.runs, sys.name))
                    local run = M.measure(sys, prompts_of(set.list, r, c), cfg, mon)
                    run.run, run.order = r, pos
                    local runs = results[sys.id][c].runs
                    runs[#runs + 1] = run
                    died(sys)
                end
            end
        end
    end
    if cfg.duration and cfg.duration > 0 then
        local c = cfg.concurrency[1]
        local st = {}
        for _, sys in ipairs(systems) do st[sys.id] = { runs = {} } end
        local t0, r = task.now(), 0
        while task.now() - t0 < cfg.duration do
            r = r + 1
            for pos, sys in ipairs(rotated(systems, r - 1)) do
                if alive(sys) and task.now() - t0 < cfg.duration then
                    progress(string.format("stability at concurrency %d: %.0f of %.0f s, run %d, %s", c,
                        task.now() - t0, cfg.duration, r, sys.name))
                    local run = M.measure(sys, prompts_of(set.list, r, c), cfg, mon)
                    run.run, run.order, run.t_s = r, pos, task.now() - t0
                    run.gaps_ms = nil
                    local runs = st[sys.id].runs
                    runs[#runs + 1] = run
                    died(sys)
                end
            end
        end
        results.stability = { concurrency = c, duration_s = task.now() - t0, by_system = st }
    end
    return results
end

-- The drift test of a stability run: the least-squares line of throughput
-- over time, its slope as % of the mean per hour and the slope's p-value,
-- and the first quarter of the runs against the last (Welch).
function M.drift(runs)
    local t, y = {}, {}
    for _, run in ipairs(runs) do
        if run.ok and run.throughput_tps then
            t[#t + 1] = run.t_s
            y[#y + 1] = run.throughput_tps
        end
    end
    local d = { runs = #y }
    local fit = stats.linregress(t, y)
    local m = stats.mean(y)
    if fit and m and m > 0 then
        d.slope_tps_per_hour = fit.slope * 3600
        d.slope_pct_per_hour = fit.slope * 3600 / m * 100
        d.p = fit.p
        d.r = fit.r
    end
    local q = math.floor(#y / 4)
    if q >= 2 then
        local first, last = {}, {}
        for i = 1, q do first[i] = y[i] end
        for i = #y - q + 1, #y do last[#last + 1] = y[i] end
        d.first_quarter_mean, d.last_quarter_mean = stats.mean(first), stats.mean(last)
        local _, _, p = stats.welch(last, first)
        d.quarters_p = p
    end
    if d.p then
        if d.p < 0.05 and math.abs(d.slope_pct_per_hour) >= 1 then
            d.verdict = d.slope_pct_per_hour < 0 and "degrading" or "improving"
        else
            d.verdict = "stable"
        end
    else
        d.verdict = "too few runs"
    end
    return d
end

return M
