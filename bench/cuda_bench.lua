-- cuda_bench.lua — issue 4's speed figures for one GGUF model on the GPU,
-- measured at the engine level (apr_decode_greedy: the pass, the argmax on
-- the device, and the copy of the ids back; no tokenizer, no HTTP).
--
--   apr run bench/cuda_bench.lua MODEL.gguf [--quick] [--vram-only] [--decode-only] [--batch-only] [--long-only] [--profile]
--                                [--kv-type f16|q8_0|q4_0] [--out FILE]
--
-- --long-only only the decode figure at 16K (for comparing attention set-ups);
-- --profile runs only a 32-token prompt and 4 decode steps (for ncu);
-- --decode-only only the decode figure at context 0; --batch-only only the
-- batched decode steps (below). --kv-type: every context's KV cache type
-- (bench/kv_types.lua compares the types side by side).
-- Prints one line per measurement as it goes and a table at the end:
-- device-to-device copy bandwidth; load time; time to first token of a
-- 32-token prompt; prompt tokens/s at 512 and 4096; decode tokens/s at
-- contexts 0, 4K and 16K (128 steps each) and prompt tokens/s of 4096 more
-- after 16K; batched decode steps as a server runs them (one token for each
-- of 1..16 sequences at short contexts): ms per step and tokens/s in all; peak VRAM of a second context of 8K (of --kv-type) as nvidia-smi
-- reports this process; and the roofline fraction of each decode figure:
-- (weight + KV bytes a step reads / step time) / copy bandwidth.
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local hrtime = require("luv").hrtime

local function now() return hrtime() * 1e-9 end
local function fail(msg, ...) io.stderr:write(string.format(msg, ...), "\n") os.exit(1) end
local function check(st, what) if st ~= 0 then fail("%s: %s", what, ffi.string(C.apr_last_error())) end end
local median = require("apr.bench.stats").median

local path = arg[1] or fail("usage: apr run bench/cuda_bench.lua MODEL.gguf [--quick] [--vram-only] [--out FILE]")
local quick, vram_only, out_path, profile, decode_only, batch_only, long_only = false, false, nil, false, false, false, false
local KV_TYPES = { f16 = C.APR_F16, q8_0 = C.APR_Q8_0, q4_0 = C.APR_Q4_0 }
local kv_type = C.APR_F16
for i = 2, #arg do
    if arg[i] == "--kv-type" then kv_type = KV_TYPES[arg[i + 1]] or fail("--kv-type must be f16, q8_0 or q4_0") end
    if arg[i] == "--quick" then quick = true
    elseif arg[i] == "--vram-only" then vram_only = true
    elseif arg[i] == "--profile" then profile = true
    elseif arg[i] == "--decode-only" then decode_only = true
    elseif arg[i] == "--batch-only" then batch_only = true
    elseif arg[i] == "--long-only" then long_only = true
    elseif arg[i] == "--out" then out_path = arg[i + 1] end
end
local results = {}
local function report(key, value, unit, note)
    results[#results + 1] = { key, value, unit, note or "" }
    io.stdout:write(string.format("%-34s %12.2f %-6s %s\n", key, value, unit, note or ""))
    io.stdout:flush()
end

-- ------------------------------------------------------------------ device
if C.apr_device_count() < 1 then fail("no CUDA device") end
local info = ffi.new("apr_device_info")
check(C.apr_device_get_info(0, info), "device 0")
io.stdout:write(string.format("device: %s, %d SMs, %.1f GiB, compute %d.%d\n", ffi.string(info.name), info.n_sm,
    tonumber(info.total_bytes) / 2^30, info.cc_major, info.cc_minor))
local bw = ffi.new("double[1]")
local copy_bw = 3.0e12
if not profile then
    check(C.apr_device_copy_bandwidth(0, 4 * 2^30, bw), "copy bandwidth")
    copy_bw = bw[0]
    report("device-to-device copy", copy_bw / 1e9, "GB/s")
end
local function free_mib()
    check(C.apr_device_get_info(0, info), "device 0")
    return tonumber(info.free_bytes) / 2^20
end
local free0 = free_mib()

-- ------------------------------------------------------------------ model
local t0 = now()
local mp = ffi.new("apr_model_params")
C.apr_model_params_default(mp)
mp.device = C.APR_DEVICE_CUDA
local mbox = ffi.new("apr_model *[1]")
check(C.apr_model_load(path, mp, mbox), "load " .. path)
local model = mbox[0]
local mi = ffi.new("apr_model_info")
C.apr_model_get_info(model, mi)
report("model load", now() - t0, "s", string.format("%d layers, %.2f GB of weights", mi.n_layer, tonumber(mi.weight_bytes) / 1e9))
local free1 = free_mib()
report("device memory taken by the model", free0 - free1, "MiB", "cudaMemGetInfo before/after load")

-- bytes a decode step reads: every weight but the embedding table (one row
-- of it is gathered), plus the cache it attends to
local gf = ffi.new("apr_gguf *[1]")
check(C.apr_gguf_open(path, gf), "open " .. path)
local embd_bytes = 0
local ei = C.apr_gguf_find_tensor(gf[0], "token_embd.weight")
if ei >= 0 and C.apr_gguf_find_tensor(gf[0], "output.weight") >= 0 then
    local ti = ffi.new("apr_gguf_tensor_info")
    check(C.apr_gguf_tensor(gf[0], ei, ti), "token_embd")
    embd_bytes = tonumber(ti.nbytes)
end
C.apr_gguf_close(gf[0])
local weight_read = tonumber(mi.weight_bytes) - embd_bytes
local kv_elem_bytes = kv_type == C.APR_Q8_0 and 34 / 32 or kv_type == C.APR_Q4_0 and 18 / 32 or 2
local kv_per_token = mi.n_layer * 2 * mi.n_head_kv * mi.head_dim * kv_elem_bytes

local function context(n_ctx, n_batch)
    local cp = ffi.new("apr_context_params")
    C.apr_context_params_default(cp)
    cp.n_ctx, cp.n_batch, cp.kv_type = n_ctx, n_batch, kv_type
    local cbox = ffi.new("apr_context *[1]")
    check(C.apr_context_new(model, cp, cbox), "context of " .. n_ctx)
    return cbox[0]
end

local MAXB = 4096
local ids = ffi.new("int32_t[?]", MAXB)
local out = ffi.new("int32_t[4]")
local batch = ffi.new("apr_batch")
batch.ids = ids
local function fill(n, seed)
    for i = 0, n - 1 do ids[i] = 1000 + (i * 7919 + seed * 104729) % 100000 % (mi.n_vocab - 1000) end
end
-- one pass of n tokens; returns seconds
local function pass(ctx, n, seed)
    fill(n, seed or 0)
    batch.n = n
    local t = now()
    check(C.apr_decode_greedy(ctx, batch, out), "decode")
    return now() - t
end
-- steps decode steps feeding back the chosen token; returns seconds per step
local function decode_steps(ctx, steps)
    batch.n = 1
    ids[0] = out[0]
    check(C.apr_decode_greedy(ctx, batch, out), "decode") -- warm (records the graph)
    local t = now()
    for _ = 1, steps do
        ids[0] = out[0]
        check(C.apr_decode_greedy(ctx, batch, out), "decode")
    end
    return (now() - t) / steps
end
local function prefill_to(ctx, len)
    C.apr_context_seq_truncate(ctx, 0, 0)
    local done = 0
    while done < len do
        local n = math.min(MAXB, len - done)
        pass(ctx, n, done)
        done = done + n
    end
end

local function gpu_mib()
    local f = io.open("/proc/self/stat")
    local pid = f and f:read("*n")
    if f then f:close() end
    local p = io.popen("nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null")
    local mib
    for line in p:lines() do
        local a, b = line:match("(%d+),%s*(%d+)")
        if tonumber(a) == pid then mib = tonumber(b) end
    end
    p:close()
    return mib
end

if profile then
    local ctx = context(4096, 512)
    pass(ctx, 32, 1)
    decode_steps(ctx, 4)
    C.apr_context_free(ctx)
    C.apr_model_free(model)
    os.exit(0)
end
-- batched decode: n sequences (16-token prompts), one token each per step
local function batched_decode()
    local NS = 16
    local cp = ffi.new("apr_context_params")
    C.apr_context_params_default(cp)
    cp.n_ctx, cp.n_batch, cp.n_seq, cp.kv_type = 16384, 64, NS, kv_type
    local cbox = ffi.new("apr_context *[1]")
    check(C.apr_context_new(model, cp, cbox), "context of 16 sequences")
    local ctx = cbox[0]
    local seq = ffi.new("int32_t[?]", 64)
    local b = ffi.new("apr_batch")
    b.ids, b.seq = ids, seq
    local outs = ffi.new("int32_t[?]", 64)
    local want = ffi.new("int8_t[?]", 64)
    for s = 0, NS - 1 do
        fill(16, s + 1)
        for i = 0, 15 do seq[i] = s end
        for i = 0, 15 do want[i] = i == 15 and 1 or 0 end
        b.n, b.want_logits = 16, want
        check(C.apr_decode_greedy(ctx, b, outs), "prompt")
    end
    for _, n in ipairs({ 1, 2, 3, 4, 8, 9, 12, 16 }) do
        for i = 0, n - 1 do seq[i], want[i] = i, 1 end -- every token's next id, as the server asks
        local function step() b.n = n check(C.apr_decode_greedy(ctx, b, outs), "decode") for i = 0, n - 1 do ids[i] = outs[i] end end
        fill(n, 7)
        step() -- records the graph
        local steps = quick and 8 or 24
        local t = now()
        for _ = 1, steps do step() end
        local sec = (now() - t) / steps
        report(string.format("decode step of %d sequences", n), sec * 1e3, "ms", string.format("%.1f tok/s in all", n / sec))
    end
    C.apr_context_free(ctx)
end
-- time to first token: a fresh 32-token prompt to its first id
local function ttft(ctx)
    local t = {}
    for r = 1, 12 do
        C.apr_context_seq_truncate(ctx, 0, 0)
        t[r] = pass(ctx, 32, r)
    end
    table.remove(t, 1) -- the first records the pass's graph
    report("TTFT, 32-token prompt", median(t) * 1e3, "ms", "median of 11")
end

if batch_only then
    local ctx = context(4096, 512)
    ttft(ctx)
    C.apr_context_free(ctx)
    batched_decode()
    C.apr_model_free(model)
    os.exit(0)
end

if decode_only then
    local ctx = context(1024, 64)
    pass(ctx, 1, 1)
    local s = decode_steps(ctx, 128)
    report("decode at 0", 1 / s, "tok/s", string.format("%.2f ms/step, roofline %.0f%%", s * 1e3,
        100 * weight_read / s / copy_bw))
    C.apr_context_free(ctx)
    C.apr_model_free(model)
    os.exit(0)
end

if long_only then
    local ctx = context(16384 + MAXB + 64 + 64, MAXB)
    prefill_to(ctx, 16384)
    local s = decode_steps(ctx, 64)
    report("decode at 16384", 1 / s, "tok/s", string.format("%.2f ms/step, roofline %.0f%%", s * 1e3,
        100 * (weight_read + (16384 + 32) * kv_per_token) / s / copy_bw))
    C.apr_context_free(ctx)
    C.apr_model_free(model)
    os.exit(0)
end

if not vram_only then
    local steps = quick and 32 or 128
    local ctx = context(16384 + MAXB + steps + 64, MAXB)

    ttft(ctx)

    for _, n in ipairs({ 512, 4096 }) do
        local tt = {}
        for r = 1, (quick and 2 or 4) do
            C.apr_context_seq_truncate(ctx, 0, 0)
            tt[r] = pass(ctx, n, r)
        end
        table.remove(tt, 1)
        report(string.format("prompt pp%d", n), n / median(tt), "tok/s")
    end

    for _, at in ipairs({ 0, 4096, 16384 }) do
        prefill_to(ctx, at)
        local s = decode_steps(ctx, steps)
        local bytes = weight_read + (at + steps / 2) * kv_per_token
        report(string.format("decode at %d", at), 1 / s, "tok/s",
            string.format("%.2f ms/step, roofline %.0f%%", s * 1e3, 100 * bytes / s / copy_bw))
    end
    -- 4096 more prompt tokens after the 16K context
    local pp = pass(ctx, MAXB, 99)
    report("prompt pp4096 after 16K", MAXB / pp, "tok/s")
    C.apr_context_free(ctx)
    batched_decode()
end

-- peak VRAM: a context of 8K (of --kv-type), after a prompt and some decoding
do
    local before = free_mib()
    local ctx = context(8192, 512)
    report("device memory of an 8K context", before - free_mib(), "MiB", "KV cache, activations, scratch")
    pass(ctx, 512, 1)
    decode_steps(ctx, 8)
    local mib = gpu_mib()
    if mib then report("VRAM, 8K context (nvidia-smi)", mib, "MiB", "process total") end
    C.apr_context_free(ctx)
end

io.stdout:write("\n| measurement | value | unit | note |\n|---|---|---|---|\n")
for _, r in ipairs(results) do
    io.stdout:write(string.format("| %s | %.2f | %s | %s |\n", r[1], r[2], r[3], r[4]))
end
if out_path then
    local f = assert(io.open(out_path, "w"))
    for _, r in ipairs(results) do f:write(string.format("%s\t%.4f\t%s\t%s\n", r[1], r[2], r[3], r[4])) end
    f:close()
end
C.apr_model_free(model)
