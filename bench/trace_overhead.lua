-- trace_overhead.lua — what tracing costs a decode: tokens/s with spans off,
-- with spans on, and (on the GPU, --kernels) with spans and CUPTI's kernel
-- records on, measured side by side in one process.
--
--   apr run bench/trace_overhead.lua [MODEL] [--gpu] [--tokens N] [--rounds N] [--kernels] [--out FILE]
--
-- Each round generates N tokens (greedy, past end-of-generation) once per
-- mode, the modes' order rotating from round to round so drifts of the
-- machine (other processes, clocks) fall on every mode alike; the figure of
-- a mode is its median decode tokens/s (apr's own timing: sampling,
-- detokenizing and the forward pass of each token). A warm-up generation
-- comes first. With --kernels, CUPTI is on from before the model loads to
-- the end of the warm-up, so the CUDA graphs are made while it records (as
-- under `apr trace --kernels`), and the rounds then turn it on and off; the
-- table says how many GPU records each token brought (0 would mean CUPTI
-- saw none). Compare the "off" rows of a run with and one without --kernels
-- for what having had CUPTI on costs by itself. Last, the
-- cost of one span is measured in a tight loop (off: the branch; on: the
-- record), and its share of a token's time at the spans a token records:
-- a figure that the machine's noise does not swamp as it does the
-- side-by-side tokens/s on a loaded CPU.
local trace = require "apr.trace"
local hrtime = require("luv").hrtime

local function fail(msg, ...) io.stderr:write(string.format(msg, ...), "\n") os.exit(1) end

local path, gpu, tokens, rounds, kernels, out_path = nil, false, 32, 5, false, nil
local i = 1
while i <= #arg do
    local a = arg[i]
    if a == "--gpu" then gpu = true
    elseif a == "--kernels" then kernels = true
    elseif a == "--tokens" then i = i + 1 tokens = tonumber(arg[i]) or fail("--tokens N")
    elseif a == "--rounds" then i = i + 1 rounds = tonumber(arg[i]) or fail("--rounds N")
    elseif a == "--out" then i = i + 1 out_path = arg[i]
    elseif a:sub(1, 2) == "--" then fail("unknown option %s", a)
    else path = a end
    i = i + 1
end
path = path or require("apr.model").default_model_path()
if kernels and not gpu then fail("--kernels needs --gpu") end

local apr = require "apr"
if kernels then
    assert(trace.start({ kernels = true }))
    if not trace.info().kernels then fail("CUPTI is not recording: %s", trace.info().kernels_note) end
end
local t0 = hrtime()
local m, err = apr.load(path, { device = gpu and "cuda" or "cpu", ctx = 2048 })
if not m then fail("%s", err) end
io.stdout:write(string.format("model: %s on %s, loaded in %.1f s\n", path, m.info.device, (hrtime() - t0) * 1e-9))

local PROMPT = "// A binary search tree in C, with insert, delete and an in-order walk.\n#include <stdlib.h>\n"
local function decode()
    local gen = m:generate(PROMPT, { max_tokens = tokens, temperature = 0, ignore_eos = true, raw = true })
    for _ in gen do end
    return gen.summary.timings.decode_tps, gen.summary.n_generated
end

local modes = { "off", "spans" }
if kernels then modes[3] = "spans+kernels" end
local tps, records, kernel_records, steps = {}, {}, {}, {}
for _, mode in ipairs(modes) do tps[mode], records[mode], kernel_records[mode], steps[mode] = {}, 0, 0, 0 end

decode()  -- warm-up: first pass shapes (graphs), caches
if kernels then trace.stop() end
for r = 1, rounds do
    for k = 0, #modes - 1 do
        local mode = modes[(r - 1 + k) % #modes + 1]
        if mode ~= "off" then
            local ok, serr = trace.start({ kernels = mode == "spans+kernels" })
            if not ok then fail("trace: %s", serr) end
        end
        local rate, n = decode()
        if mode ~= "off" then
            local info = trace.info()
            trace.stop()
            records[mode] = records[mode] + info.records
            kernel_records[mode] = kernel_records[mode] + info.gpu_records
            if mode == "spans+kernels" and not info.kernels then fail("CUPTI is not recording: %s", info.kernels_note) end
        end
        steps[mode] = steps[mode] + n
        table.insert(tps[mode], rate)
        io.stdout:write(string.format("round %d %-14s %8.2f tokens/s\n", r, mode, rate))
        io.stdout:flush()
    end
end

local median = require("apr.bench.stats").median

-- What one span costs the thread that records it: a begin/end pair
-- through the FFI (as Lua spans go; C spans skip the FFI), best of 5 runs
-- of 200,000 pairs, tracing off (the branch alone) and on.
local C = require("apr.core").C
local function pair_ns(active)
    if active then assert(trace.start({ ring = 65536 })) end
    local id = trace.name("bench span")
    local n, best = 200000, math.huge
    for _ = 1, 5 do
        local t = hrtime()
        for _ = 1, n do
            C.apr_trace_begin(id)
            C.apr_trace_end(id)
        end
        best = math.min(best, (hrtime() - t) / n)
    end
    if active then trace.stop() end
    return best
end
local off_ns, on_ns = pair_ns(false), pair_ns(true)

local base = median(tps.off)
local lines = {
    string.format("trace overhead, %s on %s: %d rounds of %d tokens, medians", path:match("[^/]*$"), m.info.device,
        rounds, tokens),
    string.format("%-16s %10s %9s %22s %12s %11s", "mode", "tokens/s", "vs off", "paired: median [range]",
        "span rec/tok", "GPU rec/tok"),
}
-- paired: each round's rate over the same round's "off" (measured next to
-- it), so a drift of the machine between rounds cancels
for _, mode in ipairs({ "off", "spans", "spans+kernels" }) do
    if tps[mode] then
        local med = median(tps[mode])
        local ratios = {}
        for r = 1, #tps[mode] do ratios[r] = tps[mode][r] / tps.off[r] end
        local lo, hi = math.huge, -math.huge
        for _, v in ipairs(ratios) do lo, hi = math.min(lo, v), math.max(hi, v) end
        lines[#lines + 1] = string.format("%-16s %10.2f %8.2f%% %7.2f%% [%+.0f, %+.0f]%% %12.1f %11.1f", mode, med,
            100 * (med / base - 1), 100 * (median(ratios) - 1), 100 * (lo - 1), 100 * (hi - 1),
            records[mode] / math.max(steps[mode], 1), kernel_records[mode] / math.max(steps[mode], 1))
    end
end
local pairs_per_tok = records.spans / math.max(steps.spans, 1) / 2
lines[#lines + 1] = string.format("one span (begin+end, FFI): %.1f ns off, %.1f ns on; %.1f spans a token at %.2f tokens/s " ..
    "cost %.4f%% of a token's time", off_ns, on_ns, pairs_per_tok, base, 100 * pairs_per_tok * on_ns * 1e-9 * base)
local text = table.concat(lines, "\n") .. "\n"
io.stdout:write("\n", text)
if out_path then
    local f = assert(io.open(out_path, "w"))
    f:write(text)
    f:close()
end
