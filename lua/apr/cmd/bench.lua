-- apr bench MODEL: apr against llama.cpp and Ollama on the same model,
-- measured the same way, with statistics (docs/bench.md).
local cli = require "apr.cli"
local args = require "apr.cli.args"

local M = {}

M.spec = {
    usage = "apr bench [MODEL] [--baseline llama-cpp[=PATH|URL]] [--baseline ollama[=URL]] [--runs N] [--warmup N] " ..
            "[--concurrency 1,16] [--output FILE.json] [--csv FILE] [--svg FILE] [options]",
    summary = "Benchmark apr against llama.cpp and Ollama on the same GGUF, with statistics.",
    description =
        "Starts `apr serve` on MODEL (the default model if none is given) and each baseline on the\n" ..
        "same file with the same context, parallel slots, threads and flash attention, then sends\n" ..
        "every system the same prompts through the same streaming HTTP client: warm-up runs first\n" ..
        "(excluded), then --runs measured runs with the systems taking turns in a rotating order.\n" ..
        "Reports time to first token, decode rate, throughput, inter-token latency p50/p99, prompt\n" ..
        "rate, latency, GPU memory/utilization/clock/temperature (NVML) and cold start, with\n" ..
        "medians, means, 95% intervals, Welch's t-test, Cohen's d and speedups with intervals.\n" ..
        "A baseline that cannot be found is reported as skipped, with the reason.\n" ..
        "--baseline llama-cpp: llama-server from PATH; =PATH a binary or its folder; =URL a running\n" ..
        "server. --baseline ollama: the server at $OLLAMA_HOST or 127.0.0.1:11434, or =URL.",
    positional = { min = 0, max = 1, name = "MODEL" },
    options = {
        { "baseline", value = "SYSTEM[=WHERE]", multiple = true, help = "llama-cpp[=PATH|URL] or ollama[=URL]; repeatable" },
        { "runs", value = "N", type = "integer", min = 1, max = 100000, default = 30, help = "measured runs per system and level" },
        { "warmup", value = "N", type = "integer", min = 0, max = 10000, default = 5, help = "warm-up runs per system and level (excluded)" },
        { "concurrency", value = "LIST", default = "1", help = "streams at once, one level or several: 1,16" },
        { "prompts", value = "FILE", help = "prompts: JSON Lines ({\"prompt\": ...}), a JSON array, or one per line" },
        { "max-tokens", value = "N", type = "integer", min = 1, max = 1000000, default = 128, help = "tokens each request generates" },
        { "ctx", value = "N", type = "integer", min = 0, default = 0,
          help = "context of all slots together (0: parallel x max(2048, max-tokens + 1024), at most the model's)" },
        { "parallel", value = "N", type = "integer", min = 0, max = 1024, default = 0,
          help = "parallel slots of every server (0: the highest concurrency)" },
        { "gpu", help = "run every system on the GPU (apr --device cuda, llama.cpp -ngl 999, Ollama num_gpu 999)" },
        { "flash-attn", value = "on|off", choices = { "on", "off" }, default = "on", help = "llama.cpp's flash attention" },
        { "threads", value = "N", type = "integer", min = 0, default = 0, help = "CPU threads of every system (0: all CPUs)" },
        { "seed", value = "N", type = "integer", min = 0, default = 42, help = "sampling seed sent with every request" },
        { "duration", value = "TIME", help = "then a stability run this long (90s, 30m, 1h): throughput over time, drift test" },
        { "api", value = "chat|completions", choices = { "chat", "completions" }, default = "chat",
          help = "chat: servers apply the chat template; completions: apr bench does (for models that emit no text)" },
        { "apr-url", value = "URL", help = "measure the apr server running at URL instead of starting one" },
        { "output", short = "o", value = "FILE.json", help = "write the full results as JSON (docs/bench.schema.json)" },
        { "csv", value = "FILE", help = "write one row per run as CSV" },
        { "svg", value = "FILE", help = "write charts as SVG (bars with 95% intervals, latency CDFs)" },
        { "json", help = "print the JSON document on stdout instead of the table" },
        { "gpu-index", value = "N", type = "integer", min = 0, default = 0, help = "the GPU NVML samples (its numbering)" },
        { "timeout", value = "S", type = "number", min = 1, default = 300, help = "seconds a request may go without progress" },
        { "start-timeout", value = "S", type = "number", min = 1, default = 900, help = "seconds a server may take to load" },
    },
    examples = {
        "apr bench --baseline llama-cpp --runs 10 --warmup 2",
        "apr bench model.gguf --gpu --baseline llama-cpp=/opt/llama.cpp/build/bin --baseline ollama \\\n" ..
        "      --concurrency 1,16 --runs 30 --warmup 5 -o results.json --csv runs.csv --svg charts.svg",
        "apr bench model.gguf --baseline llama-cpp=http://127.0.0.1:8081 --duration 1h",
    },
}

-- "90", "90s", "30m", "1h", "1h30m", "2d" -> seconds, or nil.
function M.parse_duration(text)
    if type(text) ~= "string" or text == "" then return nil end
    if text:match("^%d+%.?%d*$") then return tonumber(text) end
    local total, rest = 0, text
    local units = { s = 1, m = 60, h = 3600, d = 86400 }
    while rest ~= "" do
        local n, u, after = rest:match("^(%d+%.?%d*)([smhd])(.*)$")
        if not n then return nil end
        total = total + tonumber(n) * units[u]
        rest = after
    end
    return total
end

-- "1,16" -> { 1, 16 } (sorted, no duplicates), or a usage error.
local function parse_levels(text)
    local out, seen = {}, {}
    for part in (text .. ","):gmatch("([^,]*),") do
        local n = tonumber(part)
        if not n or n ~= math.floor(n) or n < 1 or n > 1024 or not part:match("^%s*%d+%s*$") then
            args.usage_error("--concurrency expects whole numbers from 1 to 1024 separated by commas, got '%s'", text)
        end
        if not seen[n] then out[#out + 1], seen[n] = n, true end
    end
    table.sort(out)
    return out
end

-- --baseline values -> { { kind = "llama.cpp" | "ollama", where = ... } }.
local function parse_baselines(list)
    local out, seen = {}, {}
    for _, b in ipairs(list) do
        local name, where = b:match("^([^=]+)=(.*)$")
        name = (name or b):lower()
        local kind = ({ ["llama-cpp"] = "llama.cpp", ["llama.cpp"] = "llama.cpp", llamacpp = "llama.cpp",
                        ["llama-server"] = "llama.cpp", ollama = "ollama" })[name]
        if not kind then args.usage_error("--baseline must be llama-cpp[=PATH|URL] or ollama[=URL], got '%s'", b) end
        if seen[kind] then args.usage_error("--baseline %s given twice", name) end
        if where == "" then where = nil end
        seen[kind] = true
        out[#out + 1] = { kind = kind, where = where }
    end
    return out
end

local function model_info(path)
    local mi = require "apr.model_info"
    local f = mi.open(path)
    local tensors = f:tensors()
    local hp = mi.hparams(f, tensors)
    local info = {
        path = path, name = type(hp.name) == "string" and hp.name or require("apr.json").null,
        architecture = tostring(hp.arch), quantization = mi.quantization(f, tensors),
        size_bytes = f.size, parameters = mi.param_count(tensors),
        context_length = hp.n_ctx or require("apr.json").null,
    }
    f:close()
    return info
end

local function write_file(path, text, what)
    local ok, err = require("apr.fs.replace").write(path, text)
    if not ok then cli.fail("cannot write the %s to %s: %s", what, path, tostring(err)) end
end

function M.run(opts)
    local uv = require "luv"
    local json = require "apr.json"
    local term = require "apr.cli.term"
    local core = require "apr.core"
    local task = require "apr.bench.task"
    local gpu = require "apr.bench.gpu"
    local harness = require "apr.bench.harness"
    local report = require "apr.bench.report"
    local prompts = require "apr.bench.prompts"

    -- Options.
    local levels = parse_levels(opts.concurrency)
    local baselines = parse_baselines(opts.baseline)
    local duration
    if opts.duration then
        duration = M.parse_duration(opts.duration)
        if not duration or duration <= 0 then
            args.usage_error("--duration expects a time such as 90s, 30m, 1h or 1h30m, got '%s'", opts.duration)
        end
    end
    local parallel = opts.parallel > 0 and opts.parallel or levels[#levels]
    if parallel < levels[#levels] then
        args.usage_error("--parallel %d is below the highest --concurrency %d", parallel, levels[#levels])
    end
    if opts.apr_url and not require("apr.bench.client").parse_url(opts.apr_url) then
        args.usage_error("--apr-url must be an http:// URL, got '%s'", opts.apr_url)
    end
    for _, b in ipairs(baselines) do
        if b.kind == "ollama" and b.where and not b.where:match("^https?://") then
            args.usage_error("--baseline ollama=URL expects an http:// URL, got '%s'", b.where)
        end
    end
    local outputs = {}
    for _, o in ipairs({ { opts.output, "JSON report" }, { opts.csv, "CSV" }, { opts.svg, "SVG" } }) do
        if o[1] then
            local ok, err = require("apr.fs.replace").check(o[1])
            if not ok then cli.fail("cannot write the %s: %s", o[2], err) end
            local dir = o[1]:match("^(.*)/[^/]*$")
            if dir and dir ~= "" and not uv.fs_stat(dir) then cli.fail("cannot write the %s: no folder %s", o[2], dir) end
            outputs[#outputs + 1] = o
        end
    end

    -- The model and the prompts.
    local model = opts[1] or require("apr.model").default_model_path()
    local st = uv.fs_stat(model)
    if not st then
        if not opts[1] then cli.fail("no MODEL given and the default model is not at %s (run `make model`)", model) end
        cli.fail("cannot open %s: no such file", model)
    end
    if st.type == "directory" then cli.fail("%s is a folder, not a model file", model) end
    local minfo = model_info(model)
    -- The default context: 2048 tokens a slot (more for long answers), at
    -- most the model's training context, which apr serve will not exceed.
    local per_slot = math.ceil(math.max(2048, opts.max_tokens + 1024) / 256) * 256
    local ctx = opts.ctx > 0 and opts.ctx or parallel * per_slot
    if opts.ctx == 0 and type(minfo.context_length) == "number" and minfo.context_length > 0 then
        ctx = math.min(ctx, minfo.context_length)
    end
    if ctx < parallel * 64 then
        cli.fail("a context of %d leaves fewer than 64 tokens for each of %d slots%s", ctx, parallel,
            opts.ctx == 0 and " (the model's training context is the limit)" or "")
    end
    local set = prompts.load(opts.prompts)
    if opts.api == "completions" then prompts.render(set, model) end

    local threads = opts.threads > 0 and opts.threads or #(uv.cpu_info() or { 1 })
    local tmp = os.getenv("TMPDIR")
    local workdir = uv.fs_mkdtemp(((tmp and tmp ~= "") and tmp or "/tmp") .. "/apr-bench-XXXXXX")
    local cfg = {
        model = model, model_size = st.size, runs = opts.runs, warmup = opts.warmup, concurrency = levels,
        max_tokens = opts.max_tokens, ctx = ctx, parallel = parallel, gpu = opts.gpu or false,
        flash_attn = opts.flash_attn == "on", threads = threads, seed = opts.seed, duration = duration,
        confidence = 0.95, request_timeout = opts.timeout, start_timeout = opts.start_timeout,
        apr_url = opts.apr_url, workdir = workdir, cold_prompt = set.list[1], api = opts.api,
    }

    -- Progress on a terminal (stderr), nothing in logs and pipes.
    local tty = term.isatty(2)
    local function status(text)
        if tty then io.stderr:write("\r\27[K", text) io.stderr:flush() end
    end
    local function note(text)
        if tty then io.stderr:write("\r\27[K") end
        io.stderr:write(text, "\n")
    end
    cfg.progress = term.progress  -- long steps (Ollama's upload): a percentage line

    local mon = gpu.open(opts.gpu_index)
    if opts.gpu and not mon.available then
        note("apr bench: GPU figures unavailable: " .. tostring(mon.reason))
    end
    local environment = report.environment(mon, opts.gpu_index)
    -- Device memory in use now (bytes), for the systems' launch footprints.
    cfg.device_memory = function()
        local s = mon.available and mon:sample()
        return s and s.mem_used or nil
    end
    cfg.device_memory_base = cfg.device_memory()

    local systems, results = {}, nil
    local argv = { "apr" }
    for _, a in ipairs(cli.argv or { "bench" }) do argv[#argv + 1] = a end
    local interrupted

    -- Ctrl+C: the runtime's handler sets a flag; it is polled here, the
    -- servers are stopped and what was measured so far is still written.
    local C = core.C
    C.apr_interrupt_clear()
    local watch = uv.new_timer()
    watch:start(200, 200, function()
        if C.apr_interrupted() ~= 0 then
            interrupted = "interrupted (Ctrl+C)"
            task.cancel(interrupted)
        end
    end)
    watch:unref()

    local partial = {}
    local ok, err = pcall(task.run, function()
        status("starting apr ...")
        systems[1] = require("apr.bench.systems.apr").prepare(cfg)
        if systems[1].status ~= "ready" then
            note(string.format("apr: %s: %s", systems[1].status, tostring(systems[1].reason)))
        end
        for _, b in ipairs(baselines) do
            status("starting " .. b.kind .. " ...")
            local mod = b.kind == "llama.cpp" and require("apr.bench.systems.llama_cpp") or require("apr.bench.systems.ollama")
            local sys = mod.prepare(b.where, cfg)
            systems[#systems + 1] = sys
            if sys.status ~= "ready" then note(string.format("%s: %s: %s", sys.name, sys.status, tostring(sys.reason))) end
            if sys.warning then note(sys.name .. ": " .. sys.warning) end
        end
        local ready = {}
        for _, s in ipairs(systems) do if s.status == "ready" then ready[#ready + 1] = s end end
        cfg.systems = ready
        if #ready > 0 then
            results = harness.run(ready, cfg, set, mon, status, partial)
        end
        status("stopping the servers ...")
        for _, s in ipairs(systems) do s:stop() end
        status("")
    end)
    if not ok then
        -- Stop what was started, in a fresh run of the loop.
        pcall(task.run, function() for _, s in ipairs(systems) do if s.proc then s:stop() end end end)
        for _, s in ipairs(systems) do if s.proc then s.proc:kill() end end
        if not interrupted then
            watch:close()
            mon:close()
            error(err, 0)
        end
        results = partial
        note("apr bench: " .. interrupted .. "; writing what was measured")
    end
    watch:close()
    mon:close()
    if tty then io.stderr:write("\r\27[K") end

    report.finish_environment(environment)
    local doc = report.build({
        cfg = cfg, systems = systems, results = results or {}, environment = environment, model = minfo,
        prompts = set, prompts_sha256 = prompts.fingerprint(set), argv = argv,
        created = os.date("!%Y-%m-%dT%H:%M:%SZ"), complete = interrupted == nil, interrupted = interrupted,
    })
    local text = json.encode(doc, { indent = 2, allow_nan = false })
    for _, o in ipairs(outputs) do
        if o[2] == "JSON report" then write_file(o[1], text .. "\n", o[2])
        elseif o[2] == "CSV" then write_file(o[1], report.csv(doc), o[2])
        else write_file(o[1], require("apr.bench.charts").render(doc), o[2]) end
    end
    if opts.json then
        io.stdout:write(text, "\n")
    else
        io.stdout:write(report.table(doc))
        for _, o in ipairs(outputs) do io.stdout:write(string.format("wrote %s: %s\n", o[2], o[1])) end
    end

    -- Logs of servers that failed stay for a look; otherwise none are kept.
    local failed = interrupted ~= nil
    for _, s in ipairs(systems) do
        if s.status == "failed" then failed = true end
    end
    for _, r in ipairs(doc.results) do if r.failed_runs > 0 then failed = true end end
    if systems[1] and systems[1].status ~= "ready" then failed = true end
    if failed then
        io.stderr:write("apr bench: server logs are in ", workdir, "\n")
    else
        local dir = uv.fs_scandir(workdir)
        while dir do
            local name = uv.fs_scandir_next(dir)
            if not name then break end
            os.remove(workdir .. "/" .. name)
        end
        uv.fs_rmdir(workdir)
    end
    return failed and 1 or 0
end

return M
