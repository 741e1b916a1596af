-- prompt_sweep.lua — the prompt pass (time to the first token at the
-- engine: the pass over n prompt tokens, the argmax on the device and the
-- copy of the id back) at many prompt lengths, odd ones included, so that a
-- cliff between two neighbouring lengths cannot hide between chosen points
-- (issue 13: <= 0.75x llama.cpp at every length from 1 to 4,096, and no
-- step of more than 10% between neighbours).
--
--   apr run bench/prompt_sweep.lua MODEL [--lengths LIST] [--reps N] [--cpu] [--out FILE]
--
-- LIST is comma-separated lengths and ranges (1-80,96,127-129,4096); the
-- default is every length from 1 to 80, then the lengths around each power
-- of two and between them up to 4,096. Each length: one pass that records
-- its CUDA graph (not counted), then N timed passes (default 5) on a cleared
-- sequence; the median is reported. The table ends with the largest step
-- between neighbouring lengths (measured time per pass, so longer prompts
-- may take longer: a step is time(n) / time(n - 1) over lengths n - 1, n
-- both in the list). Prints "length ms" lines, then the summary; --out
-- writes the lines as TSV.
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local hrtime = require("luv").hrtime

local function fail(msg, ...) io.stderr:write(string.format(msg, ...), "\n") os.exit(1) end
local function check(st, what) if st ~= 0 then fail("%s: %s", what, ffi.string(C.apr_last_error())) end end
local median = require("apr.bench.stats").median

local function default_lengths()
    local l = {}
    for n = 1, 80 do l[#l + 1] = n end
    local p = 128
    local extra = { 96, 100, 111 }
    for _, n in ipairs(extra) do l[#l + 1] = n end
    while p <= 4096 do
        for _, n in ipairs({ p - 1, p, p + 1, math.floor(p * 1.5) - 3 }) do
            if n > 80 and n <= 4096 then l[#l + 1] = n end
        end
        p = p * 2
    end
    table.sort(l)
    local u, last = {}, nil
    for _, n in ipairs(l) do if n ~= last then u[#u + 1] = n last = n end end
    return u
end

local function parse_lengths(s)
    local l = {}
    for part in s:gmatch("[^,]+") do
        local a, b = part:match("^(%d+)%-(%d+)$")
        if a then
            for n = tonumber(a), tonumber(b) do l[#l + 1] = n end
        elseif part:match("^%d+$") then
            l[#l + 1] = tonumber(part)
        else
            fail("prompt_sweep: bad length list element '%s'", part)
        end
    end
    table.sort(l)
    return l
end

local path, lengths, reps, out_path, cpu = nil, nil, 5, nil, false
local i = 1
while i <= #arg do
    local a = arg[i]
    if a == "--lengths" then lengths = parse_lengths(arg[i + 1] or "") i = i + 2
    elseif a == "--reps" then reps = tonumber(arg[i + 1]) or fail("--reps needs a number") i = i + 2
    elseif a == "--out" then out_path = arg[i + 1] i = i + 2
    elseif a == "--cpu" then cpu = true i = i + 1
    elseif a:sub(1, 1) == "-" then fail("usage: apr run bench/prompt_sweep.lua MODEL [--lengths LIST] [--reps N] [--cpu] [--out FILE]")
    else path = a i = i + 1 end
end
if not path then fail("usage: apr run bench/prompt_sweep.lua MODEL [--lengths LIST] [--reps N] [--cpu] [--out FILE]") end
lengths = lengths or default_lengths()
local maxn = lengths[#lengths]
if lengths[1] < 1 then fail("prompt_sweep: lengths start at 1") end

local mp = ffi.new("apr_model_params")
C.apr_model_params_default(mp)
mp.device = cpu and C.APR_DEVICE_CPU or C.APR_DEVICE_CUDA
local mbox = ffi.new("apr_model *[1]")
check(C.apr_model_load(path, mp, mbox), "load " .. path)
local model = mbox[0]
local mi = ffi.new("apr_model_info")
C.apr_model_get_info(model, mi)

local cp = ffi.new("apr_context_params")
C.apr_context_params_default(cp)
cp.n_ctx, cp.n_batch = math.max(256, maxn + 16), math.max(64, maxn)
local cbox = ffi.new("apr_context *[1]")
check(C.apr_context_new(model, cp, cbox), "context")
local ctx = cbox[0]

local ids = ffi.new("int32_t[?]", maxn)
local out = ffi.new("int32_t[4]")
local batch = ffi.new("apr_batch")
batch.ids = ids
-- token ids spread over the vocabulary, different for every repetition
local function fill(n, seed)
    for k = 0, n - 1 do ids[k] = 1000 + (k * 7919 + seed * 104729) % 100000 % (mi.n_vocab - 1000) end
end
local function pass(n, seed)
    C.apr_context_seq_truncate(ctx, 0, 0)
    fill(n, seed)
    batch.n = n
    local t = hrtime()
    check(C.apr_decode_greedy(ctx, batch, out), "prompt of " .. n)
    return (hrtime() - t) * 1e-6
end

local rows = {}
for _, n in ipairs(lengths) do
    pass(n, 0) -- records the shape's graph
    local t = {}
    for r = 1, reps do t[r] = pass(n, r) end
    rows[#rows + 1] = { n = n, ms = median(t) }
    io.stdout:write(string.format("%6d %9.2f\n", n, rows[#rows].ms))
    io.stdout:flush()
end

local worst, at = 0, nil
for k = 2, #rows do
    if rows[k].n == rows[k - 1].n + 1 then
        local step = rows[k].ms / rows[k - 1].ms - 1
        if step > worst then worst, at = step, rows[k].n end
    end
end
io.stdout:write(string.format("largest step between neighbouring lengths: %+.1f%% at %s tokens\n", 100 * worst,
    tostring(at)))
if out_path then
    local f = assert(io.open(out_path, "w"))
    f:write("tokens\tms\n")
    for _, r in ipairs(rows) do f:write(string.format("%d\t%.3f\n", r.n, r.ms)) end
    f:close()
end
C.apr_context_free(ctx)
C.apr_model_free(model)
