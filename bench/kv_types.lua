-- kv_types.lua — issue 17's KV-type figures on the GPU: f16 against q8_0
-- and q4_0 caches, side by side in one run, on one model (the synthetic
-- Qwen2.5-Coder-32B Q4_K_M with the real vocabulary: bench/kv_types.sh).
--
--   apr run bench/kv_types.lua MODEL.gguf [--budget 24G] [--quick] [--skip-serve] [--out FILE]
--
-- 1. The longest context that fits under --vram-budget (default 24G,
--    binary units as nvidia-smi counts) by KV type: the largest n_ctx (a
--    multiple of 256, at most the model's training context) whose context
--    apr_context_new can make beside the model under the budget (batch 512,
--    as `apr pass` makes it), then proved by prefilling it to its last
--    position and decoding one token.
-- 2. Peak VRAM with a 32K context by KV type (nvidia-smi, this process's
--    total, after a 512-token prompt and 8 decode steps), and the
--    context's own bytes (cudaMemGetInfo before and after creating it).
-- 3. Peak VRAM of `apr serve MODEL --gpu --ctx 8192 --parallel 1
--    --kv-type T` (nvidia-smi, the server's total, after one request).
-- 4. Decode tokens/s at 16K by KV type (64 steps after a 16,384-token
--    prompt; f16 measured again at the end, so drift shows), and prompt
--    tokens/s of 4,096 more after the 16K.
-- Prints a line per measurement as it goes and a table last.
local core = require "apr.core"
local uv = require "luv"
local C, ffi = core.C, core.ffi

local function now() return uv.hrtime() * 1e-9 end
local function fail(msg, ...) io.stderr:write("kv_types.lua: ", string.format(msg, ...), "\n") os.exit(1) end
local function check(st, what) if st ~= 0 then fail("%s: %s", what, ffi.string(C.apr_last_error())) end end

local path = arg[1]
if not path or path:sub(1, 2) == "--" then
    io.stderr:write("usage: apr run bench/kv_types.lua MODEL.gguf [--budget 24G] [--quick] [--skip-serve] [--out FILE]\n")
    os.exit(2)
end
local budget_text, quick, skip_serve, out_path = "24G", false, false, nil
do
    local i = 2
    while i <= #arg do
        local a = arg[i]
        if a == "--quick" then quick = true
        elseif a == "--skip-serve" then skip_serve = true
        elseif a == "--budget" then i = i + 1 budget_text = arg[i]
        elseif a == "--out" then i = i + 1 out_path = arg[i]
        else io.stderr:write("kv_types.lua: unknown option ", a, "\n") os.exit(2) end
        i = i + 1
    end
end
local UNITS = { K = 2 ^ 10, M = 2 ^ 20, G = 2 ^ 30, T = 2 ^ 40 }
local bnum, bunit = tostring(budget_text):upper():match("^([%d%.]+)([KMGT]?)I?B?$")
if not bnum then fail("--budget: a size such as 24G, not %s", tostring(budget_text)) end
local budget = math.floor(tonumber(bnum) * (UNITS[bunit] or 1))

local TYPES = { { "f16", C.APR_F16 }, { "q8_0", C.APR_Q8_0 }, { "q4_0", C.APR_Q4_0 } }
local results = {}
local function report(key, value, unit, note)
    results[#results + 1] = { key, value, unit, note or "" }
    io.stdout:write(string.format("%-44s %12.2f %-6s %s\n", key, value, unit, note or ""))
    io.stdout:flush()
end

if C.apr_device_count() < 1 then fail("no CUDA device") end
local dinfo = ffi.new("apr_device_info")
check(C.apr_device_get_info(0, dinfo), "device 0")
io.stdout:write(string.format("device: %s, %.1f GiB; model %s\n", ffi.string(dinfo.name),
    tonumber(dinfo.total_bytes) / 2 ^ 30, path))
local function free_mib()
    check(C.apr_device_get_info(0, dinfo), "device 0")
    return tonumber(dinfo.free_bytes) / 2 ^ 20
end

-- nvidia-smi's used memory of process pid (MiB), or nil.
local function smi_mib(pid)
    local p = io.popen("nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null")
    if not p then return nil end
    local mib
    for line in p:lines() do
        local a, b = line:match("(%d+),%s*(%d+)")
        if tonumber(a) == pid then mib = tonumber(b) end
    end
    p:close()
    return mib
end
local function my_pid()
    local f = io.open("/proc/self/stat")
    local pid = f and f:read("*n")
    if f then f:close() end
    return pid
end

local function load(vram_budget)
    local mp = ffi.new("apr_model_params")
    C.apr_model_params_default(mp)
    mp.device = C.APR_DEVICE_CUDA
    mp.vram_budget = vram_budget or 0
    local box = ffi.new("apr_model *[1]")
    check(C.apr_model_load(path, mp, box), "load " .. path)
    return box[0]
end

local function context(model, n_ctx, kv_type, n_batch)
    local cp = ffi.new("apr_context_params")
    C.apr_context_params_default(cp)
    cp.n_ctx, cp.n_batch, cp.kv_type = n_ctx, n_batch or 512, kv_type
    local box = ffi.new("apr_context *[1]")
    if C.apr_context_new(model, cp, box) ~= 0 then return nil, ffi.string(C.apr_last_error()) end
    return box[0]
end

local MAXB = 4096
local ids = ffi.new("int32_t[?]", MAXB)
local out = ffi.new("int32_t[4]")
local batch = ffi.new("apr_batch")
batch.ids = ids
local n_vocab
local function fill(n, seed)
    for i = 0, n - 1 do ids[i] = 1000 + (i * 7919 + seed * 104729) % 100000 % (n_vocab - 1000) end
end
local function pass(ctx, n, seed)
    fill(n, seed or 0)
    batch.n = n
    local t = now()
    check(C.apr_decode_greedy(ctx, batch, out), "decode")
    return now() - t
end
local function prefill_to(ctx, len, chunk)
    C.apr_context_seq_truncate(ctx, 0, 0)
    local done = 0
    while done < len do
        local n = math.min(chunk, len - done)
        pass(ctx, n, done)
        done = done + n
    end
end
local function decode_steps(ctx, steps)
    batch.n = 1
    ids[0] = out[0]
    check(C.apr_decode_greedy(ctx, batch, out), "decode") -- records the step's graph
    local t = now()
    for _ = 1, steps do
        ids[0] = out[0]
        check(C.apr_decode_greedy(ctx, batch, out), "decode")
    end
    return (now() - t) / steps
end

local mi = ffi.new("apr_model_info")

-- ------------------------------------------------------------------ 1. longest context under the budget
do
    local model = load(budget)
    C.apr_model_get_info(model, mi)
    n_vocab = mi.n_vocab
    local n_train = mi.n_ctx_train
    io.stdout:write(string.format("model: %d layers, %d KV heads of %d, training context %d, %.0f MiB of weights\n",
        mi.n_layer, mi.n_head_kv, mi.head_dim, n_train, tonumber(mi.weight_bytes) / 2 ^ 20))
    local longest = {}
    for _, t in ipairs(TYPES) do
        local lo, hi = 0, math.floor(n_train / 256) -- in units of 256 tokens: lo fits, hi + 1 does not
        local c = context(model, hi * 256, t[2])
        if c then
            C.apr_context_free(c)
            lo = hi
        else
            while lo < hi do
                local mid = math.floor((lo + hi + 1) / 2)
                c = context(model, mid * 256, t[2])
                if c then C.apr_context_free(c) lo = mid else hi = mid - 1 end
            end
        end
        local n = lo * 256
        if n == 0 then
            report("longest context under " .. budget_text .. ", " .. t[1], 0, "tokens", "none fits")
        else
            -- proved: the whole context prefilled, then one more token decoded
            c = context(model, n, t[2])
            local t0 = now()
            if not quick then prefill_to(c, n - 1, 512) end
            pass(c, 1, 7)
            C.apr_context_free(c)
            report("longest context under " .. budget_text .. ", " .. t[1], n, "tokens",
                string.format("%s%s", n >= n_train and "the model's whole context; " or "",
                    quick and "created, one token decoded" or
                    string.format("prefilled and decoded in %.1f s", now() - t0)))
        end
        longest[t[1]] = n
    end
    if longest.f16 > 0 then
        report("longest context, q8_0 / f16", longest.q8_0 / longest.f16, "x",
            longest.q8_0 >= n_train and "q8_0 capped by the training context" or "")
    end
    C.apr_model_free(model)
end

-- ------------------------------------------------------------------ 2 and 4: VRAM at 32K, speed at 16K
local model = load(0)
local pid = my_pid()
for _, t in ipairs(TYPES) do
    local before = free_mib()
    local c, err = context(model, 32768, t[2])
    if not c then fail("a 32K %s context: %s", t[1], err) end
    local ctx_mib = before - free_mib()
    pass(c, 512, 1)
    decode_steps(c, 8)
    local mib = smi_mib(pid)
    report("VRAM at 32K context, " .. t[1], mib or 0, "MiB",
        string.format("%s; the context itself %.0f MiB", mib and "nvidia-smi, process total" or "nvidia-smi unavailable",
            ctx_mib))
    C.apr_context_free(c)
end

local steps = quick and 16 or 64
local speed = {}
local order = { 1, 2, 3, 1 }
for k, ti in ipairs(order) do
    local t = TYPES[ti]
    local c, err = context(model, 16384 + MAXB + steps + 64, t[2], MAXB)
    if not c then fail("a 16K %s context: %s", t[1], err) end
    prefill_to(c, 16384, MAXB)
    local s = decode_steps(c, steps)
    local label = k == #order and " (again)" or ""
    report("decode at 16K, " .. t[1] .. label, 1 / s, "tok/s", string.format("%.2f ms/step", s * 1e3))
    speed[t[1]] = math.min(speed[t[1]] or math.huge, s)
    if k < #order then
        local pp = pass(c, MAXB, 99)
        report("prompt of 4096 after 16K, " .. t[1], MAXB / pp, "tok/s")
    end
    C.apr_context_free(c)
end
for _, t in ipairs({ "q8_0", "q4_0" }) do
    report("decode at 16K, " .. t .. " / f16", speed.f16 / speed[t], "x", "best of f16's two runs vs " .. t)
end
C.apr_model_free(model)

-- ------------------------------------------------------------------ 3. apr serve's VRAM
-- One completion request over loopback (plain luv TCP: the GPU machine has
-- no curl), then nvidia-smi on the server's pid.
local function serve_vram(kv)
    local exe = (rawget(_G, "APR_HOME") or ".") .. "/apr"
    local stderr = uv.new_pipe(false)
    local log, port, exited = "", nil, false
    local proc, spid = uv.spawn(exe, {
        args = { "serve", path, "--gpu", "--ctx", "8192", "--parallel", "1", "--kv-type", kv, "--port", "0" },
        stdio = { nil, nil, stderr },
    }, function() exited = true uv.stop() end)
    if not proc then return nil, "cannot start apr serve: " .. tostring(spid) end
    stderr:read_start(function(_, data)
        if not data then return end
        log = log .. data
        if not port and log:find("model ready", 1, true) then
            port = tonumber(log:match("port=(%d+)"))
            uv.stop()
        end
    end)
    local timer = uv.new_timer()
    timer:start(300000, 0, function() uv.stop() end)
    uv.run("default")
    if not port then
        timer:close()
        if not exited then proc:kill("sigkill") end
        return nil, "apr serve did not become ready:\n" .. log
    end
    local body = '{"prompt":"def fibonacci(n):","max_tokens":16,"temperature":0}'
    local req = table.concat({ "POST /v1/completions HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
                               "Content-Length: " .. #body, "Connection: close", "", body }, "\r\n")
    local answer = ""
    local sock = uv.new_tcp()
    sock:connect("127.0.0.1", port, function(err)
        if err then answer = "connect: " .. err uv.stop() return end
        sock:write(req)
        sock:read_start(function(_, data)
            if data then answer = answer .. data else sock:close() uv.stop() end
        end)
    end)
    uv.run("default")
    timer:close()
    local mib = smi_mib(spid)
    proc:kill("sigterm")
    if not exited then uv.run("default") end
    stderr:close()
    if not answer:match("^HTTP/1%.1 200") then return nil, "the request failed: " .. answer:sub(1, 200) end
    if not mib then return nil, "nvidia-smi does not list the server (pid " .. tostring(spid) .. ")" end
    return mib
end

if not skip_serve then
    for _, t in ipairs(TYPES) do
        local mib, err = serve_vram(t[1])
        if not mib then
            io.stderr:write("kv_types.lua: apr serve --kv-type ", t[1], ": ", tostring(err), "\n")
            report("VRAM of apr serve --ctx 8192 --parallel 1, " .. t[1], 0, "MiB", "FAILED: see stderr")
        else
            report("VRAM of apr serve --ctx 8192 --parallel 1, " .. t[1], mib, "MiB", "nvidia-smi, process total")
        end
    end
end

io.stdout:write("\nTargets (issue 17): q8_0 fits the model's whole 32,768 tokens under 24G, >= 2x f16's context; " ..
    "VRAM at 32K with q8_0 <= 23,678 MiB (llama-server's); apr serve at 8K with q8_0 <= 20,280 MiB; " ..
    "decode at 16K with q8_0 and q4_0 >= f16's.\n")
io.stdout:write("\n| measurement | value | unit | note |\n|---|---|---|---|\n")
for _, r in ipairs(results) do
    io.stdout:write(string.format("| %s | %.2f | %s | %s |\n", r[1], r[2], r[3], r[4]))
end
if out_path then
    local f = assert(io.open(out_path, "w"))
    for _, r in ipairs(results) do f:write(string.format("%s\t%.4f\t%s\t%s\n", r[1], r[2], r[3], r[4])) end
    f:close()
end
