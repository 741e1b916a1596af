-- server/init.lua — `apr serve` put together: the HTTP server, the routes,
-- the model and its engine, metrics, logging, hot reload and shutdown.
--
--   local server = require "apr.server"
--   local s = assert(server.start{ model = "m.gguf", port = 0, parallel = 4 })
--   s:reload()                     -- load the file again beside the old one
--   s:shutdown(30, os.exit)        -- drain, then call back with the exit code
--
-- The model loads after the server listens, so /health can say 503 until it
-- is ready. A reload loads the new model beside the old one and switches new
-- requests to it in one assignment; requests already running finish on the
-- old engine, which is freed when its last one ends. Connections never
-- notice.
local uv = require "luv"
local json = require "apr.json"
local http = require "apr.server.http"
local router = require "apr.server.router"
local metrics = require "apr.server.metrics"
local openai = require "apr.server.openai"
local engine = require "apr.server.engine"
local guard = require "apr.server.guard"
local trace = require "apr.trace"

local M = {}

------------------------------------------------------------------ logging

local LEVELS = { debug = 10, info = 20, warn = 30, error = 40 }

local function iso_time()
    local t = uv.gettimeofday and select(1, uv.gettimeofday()) or os.time()
    return os.date("!%Y-%m-%dT%H:%M:%SZ", t)
end

-- A logger writing lines to stderr: "TIME LEVEL message key=value ..." or
-- one JSON object per line (--log-format json).
local function new_logger(format, min_level)
    local min = LEVELS[min_level or "info"] or 20
    return function(level, msg, fields)
        if (LEVELS[level] or 20) < min then return end
        local line
        if format == "json" then
            local o = json.object()
            o.ts = iso_time()  -- one key at a time: the order of keys is the order set
            o.level = level
            o.msg = msg
            for _, kv in ipairs(fields or {}) do o[kv[1]] = kv[2] end
            line = json.encode(o, { separators = { ",", ":" } })
        else
            local parts = { iso_time(), level:upper(), msg }
            for _, kv in ipairs(fields or {}) do parts[#parts + 1] = kv[1] .. "=" .. tostring(kv[2]) end
            line = table.concat(parts, " ")
        end
        io.stderr:write(line, "\n")
        io.stderr:flush()
    end
end

------------------------------------------------------------------ loading

local function model_name(path)
    return ((path:match("([^/]+)$") or path):gsub("%.gguf$", ""):gsub("%.apr$", ""))
end

-- Loads the model file on a thread of its own (runtime/model/loader.c),
-- so the loop keeps answering (/health says 503) meanwhile and a load
-- stuck on its file never holds up a shutdown. Returns a handle whose
-- cancel() gives the load up; later cb(model) or cb(nil, message) unless
-- it was given up.
local function load_model(path, opts, cb)
    local core = require "apr.core"
    local model_mod = require "apr.model"
    local ffi, C = core.ffi, core.C
    local load_opts = { device = opts.device, threads = opts.threads, vram_budget = opts.vram_budget }
    local params = ffi.new("apr_model_params")
    C.apr_model_params_default(params)
    local devices = { auto = C.APR_DEVICE_AUTO, cpu = C.APR_DEVICE_CPU, cuda = C.APR_DEVICE_CUDA }
    params.device = devices[opts.device or "auto"] or C.APR_DEVICE_AUTO
    params.n_threads = opts.threads or 0
    params.vram_budget = opts.vram_budget or 0
    local box = ffi.new("apr_loader *[1]")
    if C.apr_loader_start(path, params, box) ~= 0 then
        local err = core.last_error()
        local t = uv.new_timer()
        t:start(0, 0, function()
            t:close()
            cb(nil, err)
        end)
        return { cancel = function() end }
    end
    local loader = box[0]
    local poll = uv.new_poll(C.apr_loader_fd(loader))
    local handle = {}
    local function release()
        if poll then
            poll:stop()
            poll:close()
            poll = nil
        end
        C.apr_loader_free(loader)
        loader = nil
    end
    function handle.cancel()
        if loader then release() end
    end
    poll:start("r", function()
        if not loader then return end
        local mbox = ffi.new("apr_model *[1]")
        local st = C.apr_loader_take(loader, mbox)
        if st == C.APR_ERR_BUSY then return end
        local err = st ~= 0 and core.last_error() or nil
        release()
        if st ~= 0 then return cb(nil, err) end
        local ok, m = pcall(model_mod.wrap, mbox[0], path, load_opts)
        if not ok then return cb(nil, tostring(m)) end
        cb(m)
    end)
    return handle
end

------------------------------------------------------------------ the server

local Server = {}
Server.__index = Server

function Server:log(level, msg, fields) self.logger(level, msg, fields) end

-- The engine new requests go to (nil while the first model loads).
function Server:engine() return self.current and self.current.engine end

function Server:_metrics()
    local reg = metrics.new()
    local m = {}
    m.requests = reg:counter("apr_http_requests_total", "HTTP requests answered, by route and status.",
        { "route", "status" })
    m.duration = reg:histogram("apr_http_request_duration_seconds",
        "Time from a request's arrival to the end of its answer, by route.", nil, { "route" })
    m.prompt_tokens = reg:counter("apr_prompt_tokens_total", "Prompt tokens of finished generations.")
    m.cached_tokens = reg:counter("apr_prompt_tokens_cached_total",
        "Prompt tokens of finished generations that the prefix cache supplied (not computed).")
    m.generated_tokens = reg:counter("apr_generated_tokens_total", "Tokens generated.")
    m.ttft = reg:histogram("apr_time_to_first_token_seconds",
        "Time from a generation request's arrival to its first token.")
    m.itl = reg:histogram("apr_inter_token_latency_seconds", "Time between consecutive tokens of a generation.")
    local function engines()
        local list = {}
        if self.current then list[#list + 1] = self.current.engine end
        for e in pairs(self.retiring) do list[#list + 1] = e end
        return list
    end
    local function sum(field)
        return function(set)
            local total = 0
            for _, e in ipairs(engines()) do total = total + e:stats()[field] end
            set(total)
        end
    end
    -- An engine's totals, and those of the engines reloads retired: never
    -- going down.
    self.retired_totals = {}
    local function total(field)
        return function(set)
            local t = self.retired_totals[field] or 0
            for _, e in ipairs(engines()) do t = t + e:stats()[field] end
            set(t)
        end
    end
    reg:gauge("apr_requests_running", "Generation requests decoding now.", {}, sum("running"))
    reg:gauge("apr_requests_queued", "Generation requests waiting for a free sequence.", {}, sum("queued"))
    reg:gauge("apr_kv_cache_used_tokens", "KV cache slots holding tokens.", {}, sum("kv_tokens_used"))
    reg:gauge("apr_kv_cache_total_tokens", "KV cache slots of the loaded models.", {}, sum("kv_tokens_total"))
    reg:gauge("apr_kv_cache_used_blocks", "Paged KV cache blocks held by requests.", {}, sum("kv_blocks_used"))
    reg:gauge("apr_kv_cache_cached_blocks",
        "Paged KV cache blocks only the prefix cache keeps (reusable by the next request, evicted first).", {},
        sum("kv_blocks_cached"))
    reg:gauge("apr_kv_cache_total_blocks", "Paged KV cache blocks of the loaded models.", {}, sum("kv_blocks_total"))
    reg:counter("apr_prefix_cache_hit_tokens_total",
        "Tokens taken from the prefix cache instead of computed (preempted requests resuming included).", {},
        total("tokens_reused"))
    reg:counter("apr_kv_cache_preemptions_total",
        "Requests preempted when the KV cache ran out of blocks (recomputed later, never failed).", {},
        total("preemptions"))
    if self.opts.zram_ratio then require("apr.server.zram").metrics(reg, engines, self.retired_totals) end
    reg:gauge("apr_http_connections", "Open client connections.", {}, function(set)
        set(self.http and self.http:connections() or 0)
    end)
    reg:gauge("apr_model_ready", "1 when a model is loaded and serving.", {}, function(set)
        set(self.current and 1 or 0)
    end)
    -- The device's memory in use as the driver reports it (other processes
    -- on the card count too), when the model runs on the GPU.
    local dev_info
    reg:gauge("apr_gpu_memory_used_bytes", "Memory in use on the model's GPU (absent on the CPU).", {}, function(set)
        local cur = self.current
        if not (cur and cur.model.info.device == "cuda") then return end
        local core = require "apr.core"
        dev_info = dev_info or core.ffi.new("apr_device_info")
        if core.C.apr_device_get_info(self.opts.gpu_index or 0, dev_info) == 0 then
            set(tonumber(dev_info.total_bytes - dev_info.free_bytes))
        end
    end)
    reg:gauge("apr_model_weight_bytes", "Bytes of the served model's weights on its device.", {}, function(set)
        local cur = self.current
        set(cur and cur.model.info.weight_bytes or 0)
    end)
    m.reloads = reg:counter("apr_model_reloads_total", "Hot reloads, by outcome.", { "outcome" })
    self.registry, self.metrics = reg, m
end

-- The access log line and the request counters.
function Server:_on_response(req, res)
    local t_end = uv.hrtime()
    local dur = (t_end - (req.t_start or t_end)) * 1e-9
    local route = req.route or "unmatched"
    local status = res.status or 0
    if trace.enabled() and req.t_start then trace.record(trace.name("HTTP " .. (req.method or "?") .. " " .. route), req.t_start, t_end) end
    self.metrics.requests:inc(1, route, tostring(status))
    self.metrics.duration:observe(dur, route)
    local fields = {
        { "peer", req.peer or "" }, { "method", req.method or "" }, { "path", req.path or "" },
        { "status", status }, { "bytes", res.bytes or 0 }, { "duration_s", string.format("%.4f", dur) },
    }
    -- A generation's prompt and its time to first token, beside the whole
    -- answer's: the server's share of a client's wait, at a glance.
    if req.prompt_tokens then fields[#fields + 1] = { "prompt_tokens", req.prompt_tokens } end
    if req.ttft then fields[#fields + 1] = { "ttft_s", string.format("%.4f", req.ttft) } end
    if res.aborted then fields[#fields + 1] = { "aborted", res.aborted } end
    self:log(status >= 500 and "warn" or "info", "request", fields)
end

-- The object route scripts get as `model`: tokenize, detokenize, generate
-- and chat on whatever model is current when called (generate and chat
-- must be called from a handler; they wait for the engine's tokens).
function Server:_model_facade()
    local srv = self
    local facade = {}
    local function eng()
        local e = srv:engine()
        if not e then router.fail(503, "the model is loading; retry shortly", nil, "model_loading") end
        return e
    end
    function facade:tokenize(text, o) return eng().model:tokenize(text, o) end
    function facade:detokenize(ids) return eng().model:detokenize(ids) end
    function facade:render(messages, o) return eng().model:render(messages, o) end
    function facade:generate(prompt, o) return eng():generate(prompt, o) end
    function facade:chat(messages, o)
        local e = eng()
        o = o or {}
        local prompt = e.model:render(messages, { tools = o.tools })
        local go = {}
        for k, v in pairs(o) do if k ~= "tools" then go[k] = v end end
        go.special = true
        return e:generate(prompt, go)
    end
    return setmetatable(facade, { __index = function(_, k)
        local cur = srv.current
        if k == "info" then return cur and cur.model.info end
        if k == "name" then return cur and cur.name end
        if k == "engine" then return cur and cur.engine end
    end })
end

-- message with the paths of the model files and their folders replaced,
-- for answers: a message from the loader, the engine or a route script
-- names them as the server gave them (reloads by their real path), and a
-- client has no business knowing where they are.
function Server:scrub(message)
    if type(message) ~= "string" then return message end
    local subs = {}
    local function add(path, as)
        if type(path) == "string" and #path >= 2 then subs[#subs + 1] = { path, as } end
    end
    local files = { self.path, self.opts.model, self.loading_path, self.current and self.current.path }
    for i = 1, 4 do
        local p = files[i]
        if type(p) == "string" then
            add(p, "the model")
            add(p:match("^(.*)/[^/]+$"), "the models directory")
        end
    end
    add(self.opts.models_dir, "the models directory")
    table.sort(subs, function(a, b) return #a[1] > #b[1] end)  -- longest first: a file before its folder
    for _, sub in ipairs(subs) do
        local from = sub[1]:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
        message = message:gsub(from, (sub[2]:gsub("%%", "%%%%")))
    end
    return message
end

-- The file system calls of model_in_dir, on libuv's thread pool while the
-- handler waits: a folder on a hung filesystem must not stop the loop.
local function realpath(path)
    local err, real = http.await(function(done) uv.fs_realpath(path, done) end)
    return not err and real or nil
end

local function stat(path)
    local err, st = http.await(function(done) uv.fs_stat(path, done) end)
    return not err and st or nil
end

-- The file a reload request names, as a real path inside --models-dir:
-- relative names are taken from there; "..", or a link that leads out,
-- never gets past here, nor does anything but a regular file. Raises a
-- 403 or 404 answer otherwise; none of them says what is outside. Runs in
-- the handler's coroutine.
function Server:model_in_dir(name)
    local dir = self.opts.models_dir
    if not dir then
        router.fail(403, "reloading another file needs a models directory (start apr serve with --models-dir DIR)",
            "model", "reload_path_not_allowed")
    end
    local outside = "'model' must name a file inside the server's models directory"
    if name == "" or name:find("%z") then router.fail(400, outside, "model", "reload_path_not_allowed") end
    for part in name:gmatch("[^/]+") do
        if part == ".." then router.fail(403, outside, "model", "reload_path_not_allowed") end
    end
    local root = realpath(dir)
    if not root then router.fail(500, "the models directory is gone", nil, "models_dir_missing") end
    local prefix = root:sub(-1) == "/" and root or root .. "/"
    local function inside(p) return p:sub(1, #prefix) == prefix end
    local candidate = name:sub(1, 1) == "/" and name or (prefix .. name)
    local real = realpath(candidate)
    -- Outside (lexically, or once links are followed) is refused before
    -- anything says whether such a file exists.
    if not (real and inside(real)) and not (not real and inside(candidate)) then
        router.fail(403, outside, "model", "reload_path_not_allowed")
    end
    if not real then router.fail(404, "no such model file in the models directory", "model", "model_not_found") end
    local st = stat(real)
    if not st or st.type ~= "file" then
        router.fail(400, "'model' must name a regular file", "model", "reload_path_not_allowed")
    end
    return real
end

function Server:_routes()
    local admin_key = self.opts.admin_key or (self.opts.admin and self.opts.api_key) or nil
    local app = router.new({ api_key = self.opts.api_key, admin_key = admin_key, guard = self.guard })
    local srv = self
    app:get("/health", function(req, res)
        if srv.current then
            res:json(200, { status = "ok" })
        else
            res:header("Retry-After", 1)
            res:json(503, { status = "loading" })
        end
    end)
    app:get("/metrics", function(req, res)
        res:send(200, srv.registry:render(), { ["Content-Type"] = metrics.content_type })
    end)
    app:post("/admin/reload", function(req, res)
        local path = srv.path
        if req.body ~= "" then
            local body = req.json
            if not json.is_object(body) then router.fail(400, "the request body must be a JSON object") end
            if body.model ~= nil and body.model ~= json.null then
                if type(body.model) ~= "string" then router.fail(400, "'model' must be a path", "model") end
                path = srv:model_in_dir(body.model)
            end
        end
        local ok, err = http.await(function(done) srv:reload(path, done) end)
        if not ok then
            if err == "busy" then router.fail(409, "a reload is already in progress", nil, "reload_in_progress") end
            -- The loader's message names the file and may quote its bytes:
            -- it is in the log (Server:reload), not in the answer.
            router.fail(500, "the model could not be loaded (the server's log says why)", nil, "model_load_failed")
        end
        res:json(200, { status = "reloaded", model = srv.current.name })
    end)
    openai.install(app, {
        engine = function() return srv:engine() end,
        model_name = function() return srv.current and srv.current.name or "" end,
        loaded_at = function() return srv.current and srv.current.loaded_at or os.time() end,
        metrics = self.metrics,
    })
    if self.opts.routes then
        local chunk, err = loadfile(self.opts.routes)
        if not chunk then return nil, err end
        local ok, rerr = pcall(chunk, app, self:_model_facade(), self)
        if not ok then return nil, string.format("%s: %s", self.opts.routes, tostring(rerr)) end
    end
    self.app = app
    return app
end

-- start(opts) -> server, or nil and a message (the port is taken, the
-- routes script fails to load). opts: model (path), host, port, device,
-- threads, vram_budget, ctx, kv_type ("f16", "q8_0", "q4_0"), parallel,
-- batch, queue, prefix_cache (false: off), zram_ratio and zram_algo (KV
-- blocks swapped to a compressed host pool: docs/zram.md), api_key, routes, log_format,
-- log_level, max_body, shutdown_timeout, header_timeout, idle_timeout,
-- max_connections; on_ready(server) runs when the first model is serving,
-- on_fatal(message) if it cannot be loaded.
function M.start(opts)
    local self = setmetatable({
        opts = opts, path = opts.model, retiring = {},
        logger = new_logger(opts.log_format or "text", opts.log_level),
    }, Server)
    self:_metrics()
    local names = {}
    for i, n in ipairs(opts.host_names or {}) do names[i] = n end
    names[#names + 1] = opts.host  -- a host name given to bind to is one the clients use
    self.guard = guard.new({ bound = opts.host or "127.0.0.1", names = names })
    local app, err = self:_routes()
    if not app then return nil, err end
    local h, lerr = http.listen({
        host = opts.host, port = opts.port, handler = app:handler(),
        error_body = function(status, message, ...)
            return router.error_body(status, self:scrub(message), ...)
        end,
        max_body = opts.max_body, max_connections = opts.max_connections,
        max_connections_per_client = opts.max_connections_per_client,
        header_timeout = opts.header_timeout, idle_timeout = opts.idle_timeout,
        body_timeout = opts.body_timeout,
        log = function(level, msg) self:log(level, msg) end,
        on_response = function(req, res) self:_on_response(req, res) end,
    })
    if not h then return nil, lerr end
    self.http = h
    self.guard:allow(h.host)
    self:log("info", "listening", { { "url", string.format("http://%s:%d", h.host, h.port) },
        { "port", h.port } })
    self:reload(opts.model, function(ok, rerr)
        if ok then
            if opts.on_ready then opts.on_ready(self) end
        elseif opts.on_fatal then
            opts.on_fatal(rerr)
        end
    end)
    return self
end

-- reload([path], cb): loads path (default: the current file) beside the
-- current model, then switches to it; cb(true) or cb(nil, message), with
-- "busy" while another reload runs.
function Server:reload(path, cb)
    cb = cb or function() end
    if self.loading then return cb(nil, "busy") end
    if self.stopping then return cb(nil, "the server is shutting down") end
    path = path or self.path
    self.loading, self.loading_path = true, path
    local t0 = uv.hrtime()
    self:log("info", "loading model", { { "path", path } })
    self.load = load_model(path, self.opts, function(model, err)
        self.load = nil
        local eng
        if model then
            -- Without --ctx: under a VRAM budget, what the budget leaves
            -- after the weights and scratch (the engine sizes it: 0);
            -- otherwise the model's own context, capped.
            local n_train = model.info.n_ctx_train > 0 and model.info.n_ctx_train or 4096
            local ctx = self.opts.ctx
            if not ctx then
                ctx = (self.opts.vram_budget and model.info.device == "cuda") and 0
                    or math.min(n_train, self.opts.ctx_cap or 32768)
            end
            eng, err = engine.new(model, { parallel = self.opts.parallel, ctx = ctx, kv_type = self.opts.kv_type,
                                          batch = self.opts.batch, queue = self.opts.queue,
                                          prefix_cache = self.opts.prefix_cache,
                                          zram_ratio = self.opts.zram_ratio, zram_algo = self.opts.zram_algo })
        end
        self.loading = false
        if not eng then
            self.metrics.reloads:inc(1, "failed")
            self:log("error", "cannot load model", { { "path", path }, { "error", err } })
            return cb(nil, err)
        end
        local old = self.current
        self.current = { model = model, engine = eng, name = model_name(path), path = path, loaded_at = os.time() }
        self.path = path
        local st = eng:stats()
        self:log("info", "model ready", { { "path", path }, { "device", model.info.device },
            { "parallel", st.n_seq }, { "ctx", st.n_ctx }, { "prefix_cache", st.prefix_cache },
            { "kv_type", self.opts.kv_type or "f16" },
            { "seconds", string.format("%.2f", (uv.hrtime() - t0) * 1e-9) } })
        local z = eng:zram_stats()
        if z then
            self:log("info", "zram pool", { { "algo", self.opts.zram_algo or "lz4" }, { "ratio", self.opts.zram_ratio },
                { "max_mib", string.format("%.1f", z.pool.max_bytes / 2 ^ 20) },
                { "page_bytes", z.pool.page_bytes } })
            self.zram_log = self.zram_log or require("apr.server.zram").start_log(self, self.opts.zram_log_s or 10)
        end
        if old then
            self.metrics.reloads:inc(1, "ok")
            self.retiring[old.engine] = true
            old.engine:retire(function()
                self.retiring[old.engine] = nil
                for _, field in ipairs({ "tokens_reused", "preemptions" }) do
                    self.retired_totals[field] = (self.retired_totals[field] or 0) + old.engine.final_stats[field]
                end
                if old.engine.final_zram then
                    require("apr.server.zram").retire(self.retired_totals, old.engine.final_zram)
                end
                self:log("info", "previous model freed", { { "path", old.path } })
                old.model, old.engine = nil, nil
                collectgarbage()
                collectgarbage()
            end)
        end
        cb(true)
    end)
end

-- shutdown(timeout, cb): stops accepting, lets answers in progress finish
-- for up to timeout seconds, cuts what is left, frees the engines, then
-- cb(0).
function Server:shutdown(timeout, cb)
    if self.stopping then return end
    self.stopping = true
    self:log("info", "shutting down", { { "timeout_s", timeout } })
    local finished = false
    local timer = uv.new_timer()
    local function finish(forced)
        if finished then return end
        finished = true
        timer:stop()
        timer:close()
        if forced then self.http:close() end
        if self.zram_log then
            self.zram_log:stop()
            self.zram_log:close()
            self.zram_log = nil
            local z = self.current and self.current.engine:zram_stats()
            if z then self:log("info", "zram at exit", require("apr.server.zram").fields(z)) end
        end
        -- A load still running is given up: its thread may be stuck on the
        -- file for good, and nothing waits for it (runtime/model/loader.c).
        if self.load then
            self:log("warn", "model load given up", { { "path", self.loading_path or self.path } })
            self.load.cancel()
            self.load = nil
            self.loading = false
        end
        local engines = {}
        if self.current then engines[#engines + 1] = self.current.engine end
        for e in pairs(self.retiring) do engines[#engines + 1] = e end
        for _, e in ipairs(engines) do
            for _, gen in pairs(e.live) do gen:cancel() end
            e:retire()
        end
        self.current = nil
        self:log("info", forced and "stopped (timeout: requests cut)" or "stopped")
        cb(0)
    end
    timer:start(math.floor(timeout * 1000), 0, function() finish(true) end)
    self.http:drain(function() finish(false) end)
end

M.Server = Server
return M
