-- bench/systems/ollama.lua — Ollama, through its own API, on the same GGUF:
-- the file is uploaded as a blob (POST /api/blobs/sha256:DIGEST, skipped
-- when the server has it), a model is created from it (POST /api/create),
-- and every request is POST /api/chat with the same messages and matching
-- options (context per sequence, tokens to generate, greedy, seed, layers
-- on the GPU, threads). Its final object's timing fields (prompt_eval_*,
-- eval_*, load_duration) are recorded beside the client's own timing.
--
-- What cannot be matched from a client, and is recorded as such: Ollama's
-- parallel sequences and flash attention are settings of its server
-- (OLLAMA_NUM_PARALLEL, OLLAMA_FLASH_ATTENTION), it has no option to ignore
-- the end-of-sequence token, and it reuses a cached prompt prefix.
local checksum = require "apr.checksum"
local task = require "apr.bench.task"
local client = require "apr.bench.client"
local server = require "apr.bench.server"

local M = {}

M.DEFAULT_URL = "http://127.0.0.1:11434"

-- The server's URL: the one given, else $OLLAMA_HOST (which may lack the
-- scheme or the port, as the ollama command accepts it), else the default.
function M.url(spec)
    if spec and spec ~= "" then return spec end
    local env = os.getenv("OLLAMA_HOST")
    if not env or env == "" then return M.DEFAULT_URL end
    if not env:match("^https?://") then env = "http://" .. env end
    if not env:match("^https?://[^/]+:%d+") then env = env:gsub("^(https?://[^/]+)", "%1:11434") end
    return (env:gsub("0%.0%.0%.0", "127.0.0.1"))
end

local function basename(path) return path:match("([^/]+)$") or path end

-- Uploads the GGUF unless the server has the blob already.
local function upload(sys, cfg, digest)
    local path = "/api/blobs/sha256:" .. digest
    local head = task.await(function(cb)
        client.request({ host = sys.host, port = sys.port, method = "HEAD", path = sys.base .. path, timeout = 30 }, cb)
    end)
    if head.status == 200 then return true, "already on the server" end
    local progress = cfg.progress and cfg.progress("uploading the model to Ollama")
    local r = task.await(function(cb)
        client.request({ host = sys.host, port = sys.port, method = "POST", path = sys.base .. path,
                         body_file = cfg.model, body_size = cfg.model_size, timeout = 300,
                         headers = { ["Content-Type"] = "application/octet-stream" },
                         on_progress = progress and function(done, total) progress.update(done, total) end }, cb)
    end)
    if progress then progress.finish() end
    if r.error then return nil, "uploading the blob: " .. r.error end
    if r.status ~= 201 and r.status ~= 200 then
        return nil, string.format("uploading the blob: HTTP %d %s", r.status, (r.body or ""):sub(1, 200))
    end
    return true, "uploaded"
end

-- POST /api/create from the blob: the "files" form (Ollama 0.5.5 and
-- later), else the older Modelfile form.
local function create(sys, cfg, digest)
    local ok, err = sys:json("POST", "/api/create",
        { model = sys.model, files = { [basename(cfg.model)] = "sha256:" .. digest }, stream = false }, 600)
    if ok then return true end
    local ok2, err2 = sys:json("POST", "/api/create",
        { name = sys.model, modelfile = "FROM @sha256:" .. digest .. "\n", stream = false }, 600)
    if ok2 then return true end
    return nil, string.format("creating the model: %s; the older form: %s", tostring(err), tostring(err2))
end

-- Unloads the model (keep_alive 0) so that the next request loads it.
local function unload(sys)
    return sys:json("POST", "/api/generate", { model = sys.model, keep_alive = 0 }, 120)
end

function M.prepare(spec, cfg)
    local sys = server.new("ollama", "Ollama")
    sys.protocol = "ollama"
    local url = M.url(spec)
    local u, err = client.parse_url(url)
    if not u then return sys:skip(err) end
    sys.host, sys.port, sys.base = u.host, u.port, u.base
    sys.settings.url = url
    local v, verr = sys:json("GET", "/api/version", nil, 10)
    if type(v) ~= "table" or type(v.version) ~= "string" then
        return sys:skip(string.format("no Ollama server at %s (%s)", url, tostring(verr or "no version in /api/version")))
    end
    sys.version = "Ollama " .. v.version

    -- The same file, by its SHA256 (cached beside it after the first time).
    local f, ferr = require("apr.file").open(cfg.model)
    if not f then return sys:fail(ferr) end
    local digest, derr = checksum.digest(f)
    f:close()
    if not digest then return sys:fail("hashing the model: " .. tostring(derr)) end
    sys.model = "apr-bench-" .. digest:sub(1, 12)
    local up, uerr = upload(sys, cfg, digest)
    if not up then return sys:fail(uerr) end
    sys.settings.blob = uerr
    local created, cerr = create(sys, cfg, digest)
    if not created then return sys:fail(cerr) end

    sys.options = { num_ctx = math.floor(cfg.ctx / cfg.parallel), num_gpu = cfg.gpu and 999 or 0,
                    num_thread = cfg.threads }
    sys.keep_alive = "30m"
    sys.settings = {
        url = url, model = sys.model, blob = sys.settings.blob, options = sys.options,
        ctx = cfg.ctx, parallel = "the server's OLLAMA_NUM_PARALLEL (not settable per request)",
        flash_attn = "the server's OLLAMA_FLASH_ATTENTION (not settable per request)",
        ignore_eos = "not available in Ollama: a request may stop before max_tokens",
        prompt_cache = "Ollama reuses a cached prompt prefix (cannot be turned off)",
    }

    -- Cold start: unloaded, then the first request loads it.
    local unloaded, uerr2 = unload(sys)
    if not unloaded then return sys:fail("unloading before the cold start: " .. tostring(uerr2)) end
    local before = cfg.device_memory and cfg.device_memory()
    local t = task.now()
    local cold, cold_err = sys:cold_request(cfg, t)
    if not cold then return sys:fail(cold_err) end
    sys:note_launch_memory(before, cfg)
    cold.what = "model load (unloaded first with keep_alive 0) to the first streamed token"
    sys.cold = cold
    sys.status = "ready"
    sys.on_stop = function() unload(sys) end
    sys.gpu_memory = function(self) return M.gpu_memory(self) end
    return sys
end

-- The device memory of the loaded model, as Ollama reports it (/api/ps).
function M.gpu_memory(sys)
    local ps, err = sys:json("GET", "/api/ps", nil, 10)
    if type(ps) ~= "table" or type(ps.models) ~= "table" then return nil, err or "no /api/ps" end
    for _, m in ipairs(ps.models) do
        if m.name == sys.model or m.model == sys.model or (type(m.name) == "string" and m.name:find(sys.model, 1, true)) then
            if type(m.size_vram) == "number" then return m.size_vram, "Ollama /api/ps size_vram" end
        end
    end
    return nil, "the model is not loaded (/api/ps)"
end

return M
