-- apr serve MODEL: an OpenAI-compatible HTTP server (docs/server.md).
local cli = require "apr.cli"

local M = {}

M.spec = {
    usage = "apr serve [MODEL] [options]",
    summary = "Serve a model over an OpenAI-compatible HTTP API, with continuous batching.",
    description =
        "Endpoints: POST /v1/completions, POST /v1/chat/completions (streaming with\n" ..
        "\"stream\": true), GET /v1/models, GET /health, POST /tokenize, POST /detokenize,\n" ..
        "GET /metrics (Prometheus), POST /admin/reload (off unless --admin-key or --admin).\n" ..
        "MODEL defaults to the built-in model that `make model` installs. With --api-key\n" ..
        "every path but /health needs 'Authorization: Bearer KEY'. POST bodies must be\n" ..
        "'Content-Type: application/json'; a Host that is not this server's (see\n" ..
        "--host-name) and cross-origin browser requests get 403. SIGTERM/SIGINT drain and\n" ..
        "exit 0; SIGHUP reloads the model file. --port 0 picks a free port (logged at start).",
    positional = { min = 0, max = 1, name = "MODEL" },
    options = {
        { "host", value = "ADDR", default = "127.0.0.1", help = "address to listen on (0.0.0.0: every interface)" },
        { "port", value = "N", type = "integer", min = 0, max = 65535, default = 8080, help = "port to listen on" },
        { "gpu", help = "run the model on the GPU (same as --device cuda)" },
        { "device", value = "NAME", choices = { "auto", "cpu", "cuda" }, default = "auto", help = "where the model runs" },
        { "threads", value = "N", type = "integer", min = 0, default = 0, help = "CPU threads (0: all)" },
        { "vram-budget", value = "SIZE", type = "size",
          help = "most GPU memory apr may allocate (e.g. 22G); without --ctx the KV cache gets what is left" },
        { "ctx", value = "N", type = "integer", min = 0, default = 0,
          help = "KV cache slots all requests draw from (0: the model's training context, at most 32768, " ..
                 "or what --vram-budget leaves)" },
        { "kv-type", value = "TYPE", choices = { "f16", "q8_0", "q4_0" }, default = "f16",
          help = "KV cache element type (q8_0: about half of f16's memory, q4_0: a quarter)" },
        { "parallel", value = "N", type = "integer", min = 1, max = 1024, default = 4,
          help = "requests decoded together; any one may use the whole cache" },
        { "no-prefix-cache", help = "compute every prompt whole (no reuse of earlier requests' KV blocks)" },
        { "zram", help = "swap KV blocks evicted from the device to compressed host memory, not recompute them" },
        { "zram-algo", value = "NAME", choices = { "lz4", "zstd" },
          help = "the pool's compressor (default lz4; implies --zram)" },
        { "zram-ratio", value = "R", type = "number", min = 0.01, max = 1000,
          help = "cap the pool at R times the KV cache's bytes (default 2.5; implies --zram)" },
        { "batch", value = "N", type = "integer", min = 1, default = 512, help = "most tokens one batched step decodes" },
        { "queue", value = "N", type = "integer", min = 0, default = 64,
          help = "requests that may wait for a free slot before 503" },
        { "api-key", value = "KEY", help = "require 'Authorization: Bearer KEY' (also $APR_API_KEY)" },
        { "admin-key", value = "KEY",
          help = "turn the admin routes (/admin/...) on, behind 'Authorization: Bearer KEY' (also $APR_ADMIN_KEY)" },
        { "admin", help = "turn the admin routes on behind --api-key (without --admin-key)" },
        { "models-dir", value = "DIR", help = "the folder /admin/reload may load other model files from" },
        { "host-name", value = "NAME", multiple = true,
          help = "a host name clients use for this server (repeatable; '*': any, behind a proxy that checks Host)" },
        { "routes", value = "FILE.lua", help = "a Lua script that adds or overrides routes" },
        { "log-format", value = "FORMAT", choices = { "text", "json" }, default = "text", help = "log lines on stderr" },
        { "log-level", value = "LEVEL", choices = { "debug", "info", "warn", "error" }, default = "info",
          help = "least important log lines shown" },
        { "max-body", value = "SIZE", type = "size", default = 8 * 2 ^ 20, help = "largest request body (413 above)" },
        { "max-connections", value = "N", type = "integer", min = 1, default = 1024,
          help = "open connections before new ones get 503" },
        { "max-connections-per-client", value = "N", type = "integer", min = 0, default = 256,
          help = "open connections one client address may hold before its new ones get 429 (0: no cap)" },
        { "shutdown-timeout", value = "S", type = "number", min = 0, default = 30,
          help = "seconds requests in progress get to finish on SIGTERM/SIGINT" },
        { "header-timeout", value = "S", type = "number", min = 0.01, default = 10,
          help = "seconds a request's head may take to arrive (408 after)" },
        { "idle-timeout", value = "S", type = "number", min = 0.01, default = 60,
          help = "seconds an idle keep-alive connection stays open" },
        require("apr.trace.session").OPTION,
    },
    examples = {
        "apr serve models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --port 8080",
        "apr serve model.gguf --gpu --parallel 16 --ctx 32768 --api-key sk-local",
        "apr serve model.gguf --gpu --parallel 16 --vram-budget 24G",
        "apr serve model.gguf --gpu --parallel 16 --vram-budget 24G --zram --zram-algo lz4 --zram-ratio 2.5",
        "apr serve models/a.gguf --models-dir models --admin-key sk-admin   # POST /admin/reload {\"model\": \"b.gguf\"}",
        "curl localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n" ..
        "      -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'",
    },
}

-- The default context: the model's own, capped so that a 128k-context
-- model does not take its whole KV cache on a laptop.
local DEFAULT_CTX_CAP = 32768

function M.run(opts)
    local uv = require "luv"
    local server = require "apr.server"
    -- The built-in model when none is given, as `apr pass` and `apr chat`.
    local path, rerr = require("apr.model_path").resolve(opts[1] or require("apr.model").default_model_path())
    if not path then cli.fail("%s", rerr) end
    -- Checked without opening: the model loads on a thread of its own, and
    -- nothing here should block (a named pipe would).
    local st, serr = uv.fs_stat(path)
    if not st and not opts[1] then cli.fail("no model given and the default model is not installed: run `make model`") end
    if not st then cli.fail("cannot open %s: %s", path, tostring(serr):match("^%u+: ([^:]+)") or tostring(serr)) end
    if st.type ~= "file" then cli.fail("%s: not a regular file", path) end
    if not uv.fs_access(path, "R") then cli.fail("cannot read %s", path) end
    if opts.models_dir then
        local dst = uv.fs_stat(opts.models_dir)
        if not dst or dst.type ~= "directory" then cli.fail("--models-dir %s: not a directory", opts.models_dir) end
    end
    if opts.routes then
        local rf = io.open(opts.routes, "rb")
        if not rf then cli.fail("cannot open the routes script %s", opts.routes) end
        rf:close()
    end
    local device = opts.gpu and "cuda" or opts.device
    if opts.gpu and opts.device ~= "auto" and opts.device ~= "cuda" then
        require("apr.cli.args").usage_error("--gpu contradicts --device %s", opts.device)
    end
    local api_key = opts.api_key or os.getenv("APR_API_KEY")
    if api_key == "" then api_key = nil end
    local admin_key = opts.admin_key or os.getenv("APR_ADMIN_KEY")
    if admin_key == "" then admin_key = nil end
    if opts.admin and not admin_key and not api_key then
        require("apr.cli.args").usage_error("--admin puts the admin routes behind --api-key, and there is none")
    end
    math.randomseed(os.time() + math.floor(uv.hrtime() % 1e9))

    local exit_code
    local srv
    local function stop(code)
        exit_code = code
        uv.stop()
    end
    -- Signals arrive through libuv, as loop events: the handlers run
    -- between callbacks, never in the middle of one (so srv is set by
    -- then). They are installed before the server logs anything, so a
    -- signal sent as soon as it says "listening" is never the default
    -- action's. (luv keeps a handle alive until it is closed.)
    local function on(name, fn)
        uv.new_signal():start(name, fn)
    end
    local function shutdown()
        if srv.stopping then
            -- A second signal: stop waiting.
            return stop(0)
        end
        srv:shutdown(opts.shutdown_timeout, function(code) stop(code) end)
    end
    on("sigterm", shutdown)
    on("sigint", shutdown)
    on("sighup", function()
        srv:reload(nil, function(ok, rerr)
            if not ok then srv:log("error", "reload on SIGHUP failed", { { "error", rerr } }) end
        end)
    end)

    local ctx = opts.ctx
    if ctx == 0 then ctx = nil end
    local zram = opts.zram or opts.zram_algo or opts.zram_ratio
    if zram and opts.no_prefix_cache then
        require("apr.cli.args").usage_error("--zram needs the prefix cache: it finds swapped blocks by their tokens")
    end
    local err
    srv, err = server.start({
        model = path, host = opts.host, port = opts.port, device = device, threads = opts.threads,
        ctx = ctx, ctx_cap = DEFAULT_CTX_CAP, kv_type = opts.kv_type, parallel = opts.parallel, batch = opts.batch,
        queue = opts.queue,
        vram_budget = opts.vram_budget, prefix_cache = not opts.no_prefix_cache,
        zram_ratio = zram and (opts.zram_ratio or 2.5) or nil, zram_algo = zram and (opts.zram_algo or "lz4") or nil,
        api_key = api_key, admin_key = admin_key, admin = opts.admin, models_dir = opts.models_dir,
        host_names = opts.host_name,
        routes = opts.routes, log_format = opts.log_format, log_level = opts.log_level,
        max_body = opts.max_body, max_connections = opts.max_connections,
        max_connections_per_client = opts.max_connections_per_client,
        header_timeout = opts.header_timeout, idle_timeout = opts.idle_timeout,
        on_fatal = function(msg)
            io.stderr:write("apr serve: ", msg, "\n")
            stop(1)
        end,
    })
    if not srv then cli.fail("%s", err) end

    uv.run("default")
    return exit_code or 0   -- cli.lua closes the handles left open
end

return M
