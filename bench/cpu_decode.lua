-- bench/cpu_decode.lua — apr's CPU engine beside llama.cpp's CPU build, on the
-- same GGUF files, the same thread count and the same token ids, in one run.
--
--   ./apr run bench/cpu_decode.lua [MODEL.gguf ...] [--threads 2] [--prompt 512]
--                                  [--gen 64] [--reps 3] [--kv-type f16|q8_0|q4_0]
--                                  [--python PATH] [--no-llama]
--
-- Models default to the Qwen2.5-Coder Q4_K_M files of the models folder
-- ($APR_MODELS, else models/): the 0.5B that `make model` assembles, and the
-- 1.5B beside it when it is there. For each model and
-- repetition: a prompt of --prompt tokens as one batch (prompt tokens/s), then
-- --gen decode steps of one token each (decode tokens/s); every step computes
-- its token's logits and copies them out, as llama.cpp's eval does. apr and
-- llama.cpp alternate repetitions, so a busy machine slows both alike; the
-- table reports each side's median and the ratio apr / llama.cpp.
-- --kv-type picks both sides' KV cache type (llama.cpp's type_k and type_v,
-- with flash attention, which it needs for a quantized V).
--
-- llama.cpp runs through llama-cpp-python (bench/llama_cpp_cpu.py), which pip
-- builds from source; install it into an ignored folder, never committed:
--   python3 -m venv .cache/llama-venv
--   CMAKE_ARGS="-DGGML_NATIVE=ON" .cache/llama-venv/bin/pip install llama-cpp-python
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local hrtime = require("luv").hrtime
local cjson = require "cjson"

local function now() return hrtime() * 1e-9 end
local function fail(msg, ...) io.stderr:write(string.format(msg, ...), "\n") os.exit(1) end
local function check(st, what) if st ~= 0 then fail("%s: %s", what, ffi.string(C.apr_last_error())) end end
-- the median (apr.bench.stats), NaN of nothing
local function median(t) return require("apr.bench.stats").median(t) or 0 / 0 end

local opts = { threads = 2, prompt = 512, gen = 64, reps = 3, python = ".cache/llama-venv/bin/python", llama = true,
               ["kv-type"] = "f16" }
local KV_TYPES = { f16 = C.APR_F16, q8_0 = C.APR_Q8_0, q4_0 = C.APR_Q4_0 }
local models = {}
do
    local i = 1
    while i <= #arg do
        local a = arg[i]
        if a == "--no-llama" then opts.llama = false; i = i + 1
        elseif a:match("^%-%-") then
            local k = a:sub(3)
            if opts[k] == nil then fail("unknown option %s", a) end
            opts[k] = tonumber(arg[i + 1]) or arg[i + 1]
            i = i + 2
        else models[#models + 1] = a; i = i + 1 end
    end
end
if not KV_TYPES[opts["kv-type"]] then fail("--kv-type must be f16, q8_0 or q4_0") end
if #models == 0 then
    local model = require "apr.model"
    local dir = model.models_dir()
    for _, path in ipairs({ model.default_model_path(), dir .. "/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" }) do
        local f = io.open(path, "rb")
        if f then
            f:close()
            models[#models + 1] = path
        else
            io.stderr:write("(" .. path .. " is not installed: left out)\n")
        end
    end
    if #models == 0 then fail("no model given and the default model is not installed: run `make model`") end
end

-- The ids both sides feed: an LCG over the first 100K tokens (the same
-- formula as bench/llama_cpp_cpu.py).
local function tokens(n, n_vocab, salt)
    local out, x = ffi.new("int32_t[?]", n), 12345 + salt
    local span = math.min(n_vocab - 200, 100000)
    for i = 0, n - 1 do
        x = (x * 1103515245 + 12345) % 2147483648
        out[i] = 100 + x % span
    end
    return out
end

local function apr_rep(model, info, rep)
    local p = ffi.new("apr_context_params")
    C.apr_context_params_default(p)
    p.n_ctx = opts.prompt + opts.gen + 64
    p.n_batch = opts.prompt
    p.kv_type = KV_TYPES[opts["kv-type"]]
    local box = ffi.new("apr_context *[1]")
    check(C.apr_context_new(model, p, box), "context")
    local ctx = ffi.gc(box[0], C.apr_context_free)
    local logits = ffi.new("float[?]", info.n_vocab)
    local prompt, steps = tokens(opts.prompt, info.n_vocab, rep), tokens(opts.gen, info.n_vocab, 1000 + rep)
    local b = ffi.new("apr_batch")
    b.n, b.ids = opts.prompt, prompt
    local t0 = now()
    check(C.apr_decode(ctx, b, logits), "prompt")
    local t1 = now()
    b.n = 1
    for i = 0, opts.gen - 1 do
        b.ids = steps + i
        check(C.apr_decode(ctx, b, logits), "decode")
    end
    local t2 = now()
    C.apr_context_free(ffi.gc(ctx, nil))
    return opts.prompt / (t1 - t0), opts.gen / (t2 - t1)
end

local function llama_rep(path, rep)
    local cmd = string.format("%s bench/llama_cpp_cpu.py %q --threads %d --prompt %d --gen %d --reps 1 --kv-type %s 2>&1",
        opts.python, path, opts.threads, opts.prompt, opts.gen, opts["kv-type"])
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    local line = out:match("(%b{})%s*$")
    if not line then fail("llama.cpp run failed:\n%s", out) end
    local r = cjson.decode(line)
    return r.prompt_tps, r.decode_tps, r.version
end

local have_llama = opts.llama and os.execute(opts.python .. " -c 'import llama_cpp' 2>/dev/null") == 0
if opts.llama and not have_llama then
    io.stderr:write("llama-cpp-python not found at " .. opts.python .. ": apr only (see the header for how to install it)\n")
end

local rows, llama_version = {}, nil
for _, path in ipairs(models) do
    local mp = ffi.new("apr_model_params")
    C.apr_model_params_default(mp)
    mp.device = C.APR_DEVICE_CPU
    mp.n_threads = opts.threads
    local box = ffi.new("apr_model *[1]")
    check(C.apr_model_load(path, mp, box), path)
    local model = ffi.gc(box[0], C.apr_model_free)
    local info = ffi.new("apr_model_info")
    C.apr_model_get_info(model, info)
    apr_rep(model, info, 99)  -- warm-up: page the weights in
    local r = { name = path:match("([^/]+)%.gguf$") or path, ap = {}, ad = {}, lp = {}, ld = {} }
    for rep = 1, opts.reps do
        local pt, dt = apr_rep(model, info, rep)
        r.ap[#r.ap + 1], r.ad[#r.ad + 1] = pt, dt
        io.stdout:write(string.format("%-40s rep %d  apr        prompt %8.1f t/s  decode %7.2f t/s\n", r.name, rep, pt, dt))
        if have_llama then
            local lpt, ldt, v = llama_rep(path, rep)
            llama_version = v
            r.lp[#r.lp + 1], r.ld[#r.ld + 1] = lpt, ldt
            io.stdout:write(string.format("%-40s rep %d  llama.cpp  prompt %8.1f t/s  decode %7.2f t/s\n", r.name, rep, lpt, ldt))
        end
        io.stdout:flush()
    end
    rows[#rows + 1] = r
    C.apr_model_free(ffi.gc(model, nil))
end

io.stdout:write(string.format("\n%d threads, prompt %d tokens, %d decode steps, median of %d; load average %s",
    opts.threads, opts.prompt, opts.gen, opts.reps, (io.open("/proc/loadavg") or { read = function() return "?" end }):read("*l") or "?"))
if llama_version then io.stdout:write(", llama-cpp-python " .. llama_version) end
io.stdout:write("\n\n")
if have_llama then
    io.stdout:write(string.format("%-40s %10s %10s %6s   %10s %10s %6s\n", "model", "apr pp", "llama pp", "ratio",
        "apr tg", "llama tg", "ratio"))
else
    io.stdout:write(string.format("%-40s %10s   %10s   (no llama.cpp to compare with)\n", "model", "apr pp", "apr tg"))
end
for _, r in ipairs(rows) do
    local ap, ad, lp, ld = median(r.ap), median(r.ad), median(r.lp), median(r.ld)
    if have_llama then
        io.stdout:write(string.format("%-40s %10.1f %10.1f %6.2f   %10.2f %10.2f %6.2f\n", r.name, ap, lp, ap / lp,
            ad, ld, ad / ld))
    else
        io.stdout:write(string.format("%-40s %10.1f   %10.2f\n", r.name, ap, ad))
    end
end
