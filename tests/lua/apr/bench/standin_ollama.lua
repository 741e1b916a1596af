-- standin_ollama.lua — a stand-in for an Ollama server with set delays and
-- token rates (tests/lua/apr/bench/standin.lua), faithful to the parts of
-- Ollama's API (docs/api.md) apr bench uses:
--   GET  /api/version                 {"version": "..."}
--   HEAD /api/blobs/sha256:DIGEST     200 if the blob is there, else 404
--   POST /api/blobs/sha256:DIGEST     the file; 201, or 400 if its SHA256 is not DIGEST
--   POST /api/create                  {"model", "files": {"name.gguf": "sha256:..."}}: 400 for a
--                                     blob it does not have; streamed status lines unless stream false
--   POST /api/chat                    NDJSON: a message per token, then done with done_reason and
--                                     total_duration, load_duration, prompt_eval_count,
--                                     prompt_eval_duration, eval_count, eval_duration (nanoseconds)
--   POST /api/generate                a prompt (raw or not): as /api/chat, with "response";
--                                     keep_alive 0 and no prompt: unloads (done_reason "unload")
--   GET  /api/ps                      the loaded models with size and size_vram
-- A model not created gets 404 {"error": "model 'x' not found"}; the first
-- request after an unload pays STANDIN_LOAD_MS of loading. The server
-- runs requests one at a time per STANDIN_OLLAMA_PARALLEL (default 1, as
-- Ollama's OLLAMA_NUM_PARALLEL).
--
--   apr run tests/lua/apr/bench/standin_ollama.lua PORT
package.path = (arg[0]:match("^(.*)/tests/") or ".") .. "/?.lua;" .. package.path
local http = require "apr.server.http"
local json = require "apr.json"
local core = require "apr.core"
local standin = require "tests.lua.apr.bench.standin"
local C, ffi = core.C, core.ffi

local port = tonumber(arg[1]) or 11434
local blobs, models, loaded = {}, {}, {}
local slots = standin.slots(tonumber(os.getenv("STANDIN_OLLAMA_PARALLEL") or "") or 1)
local VRAM = standin.cfg.gpu_bytes or 0

local function sha256(data)
    local h = ffi.gc(C.apr_sha256_new(), C.apr_sha256_free)
    C.apr_sha256_update(h, data, #data)
    local hex = ffi.new("char[65]")
    C.apr_sha256_final(h, nil, hex)
    return ffi.string(hex)
end

local function err(res, code, message) res:json(code, { error = message }) end

local function ns(seconds) return math.floor(seconds * 1e9 + 0.5) end

local function model_of(res, body)
    local name = type(body) == "table" and (body.model or body.name)
    if type(name) ~= "string" then err(res, 400, "model is required") return nil end
    if not name:find(":", 1, true) then name = name .. ":latest" end
    if not models[name] then err(res, 404, string.format("model '%s' not found", (name:gsub(":latest$", "")))) return nil end
    return name
end

local function load_if_needed(name)
    if loaded[name] then return 0 end
    local t = standin.now()
    standin.sleep(standin.cfg.load_ms)
    loaded[name] = true
    return standin.now() - t
end

-- /api/chat (generate = false) or /api/generate with a prompt.
local function chat(req, res, body, generate)
    local name = model_of(res, body)
    if not name then return end
    local n_prompt
    if generate then
        if type(body.prompt) ~= "string" then return err(res, 400, "prompt is required") end
        n_prompt = standin.count_tokens(body.prompt) + (body.raw and 0 or 8)
    else
        if type(body.messages) ~= "table" then return err(res, 400, "messages is required") end
        local text = ""
        for _, m in ipairs(body.messages) do text = text .. tostring(type(m) == "table" and m.content or "") end
        n_prompt = standin.count_tokens(text) + 8 * #body.messages
    end
    local options = type(body.options) == "table" and body.options or {}
    local n_predict = tonumber(options.num_predict) or 128
    local num_ctx = tonumber(options.num_ctx) or 2048
    standin.count_request()
    slots.acquire()
    local t0 = standin.now()
    local load_s = load_if_needed(name)
    local t_prompt0 = standin.now()
    -- Ollama truncates a prompt longer than the context, keeping its end.
    n_prompt = math.min(n_prompt, num_ctx - 1)
    standin.prefill(n_prompt)
    local t_prompt = standin.now()
    local n = math.max(0, math.min(n_predict, num_ctx - n_prompt))
    local stream = body.stream ~= false
    local created = os.date("!%Y-%m-%dT%H:%M:%SZ")
    local alive, pieces = true, {}
    if stream then res:start(200, { ["Content-Type"] = "application/x-ndjson" }) end
    standin.decode(n, function(k)
        local piece = k == 1 and "tok" or " tok"
        pieces[k] = piece
        if stream then
            local ev = { model = name, created_at = created, done = false }
            if generate then ev.response = piece else ev.message = { role = "assistant", content = piece } end
            alive = res:write(json.encode(ev) .. "\n")
            return alive
        end
    end)
    local t_end = standin.now()
    slots.release()
    if not alive then return end
    local final = { model = name, created_at = created, done_reason = "length", done = true, total_duration = ns(t_end - t0), load_duration = ns(load_s),
                    prompt_eval_count = n_prompt, prompt_eval_duration = ns(t_prompt - t_prompt0), eval_count = n,
                    eval_duration = ns(t_end - t_prompt) }
    local text = stream and "" or table.concat(pieces)
    if generate then final.response = text else final.message = { role = "assistant", content = text } end
    if not stream then return res:json(200, final) end
    res:write(json.encode(final) .. "\n")
    res:finish()
end

local function handler(req, res)
    local path, m = req.path, req.method
    if path == "/" then return res:send(200, "Ollama is running") end
    if path == "/api/version" and m == "GET" then return res:json(200, { version = "0.0.0-standin" }) end
    local digest = path:match("^/api/blobs/sha256[:%-](%x+)$")
    if digest then
        if #digest ~= 64 then return err(res, 400, "invalid digest format") end
        if m == "HEAD" then return res:send(blobs[digest] and 200 or 404, "") end
        if m == "POST" then
            local got = sha256(req.body)
            if got ~= digest:lower() then return err(res, 400, "digest mismatch, expected \"sha256:" .. digest .. "\", got \"sha256:" .. got .. "\"") end
            blobs[got] = #req.body
            return res:send(201, "")
        end
        return err(res, 405, "method not allowed")
    end
    if path == "/api/ps" and m == "GET" then
        local list = json.array()
        for name in pairs(loaded) do list[#list + 1] = { name = name, model = name, size = VRAM + 2 ^ 20, size_vram = VRAM } end
        return res:json(200, { models = list })
    end
    if m ~= "POST" then return err(res, 404, "404 page not found") end
    local body = json.decode(req.body)
    if type(body) ~= "table" then return err(res, 400, "invalid JSON") end
    if path == "/api/create" then
        local name = body.model or body.name
        if type(name) ~= "string" then return err(res, 400, "model is required") end
        if type(body.files) ~= "table" then return err(res, 400, "neither 'from' nor 'files' was specified") end
        for _, d in pairs(body.files) do
            local hex = tostring(d):match("^sha256:(%x+)$")
            if not hex or not blobs[hex] then return err(res, 400, "blob " .. tostring(d) .. " not found") end
        end
        if not name:find(":", 1, true) then name = name .. ":latest" end
        models[name] = true
        if body.stream == false then return res:json(200, { status = "success" }) end
        res:start(200, { ["Content-Type"] = "application/x-ndjson" })
        for _, s in ipairs({ "parsing GGUF", "using existing layer sha256:x", "writing manifest", "success" }) do
            res:write(json.encode({ status = s }) .. "\n")
        end
        return res:finish()
    elseif path == "/api/chat" and standin.cfg.only_api ~= "completions" then
        return chat(req, res, body, false)
    elseif path == "/api/generate" then
        local name = model_of(res, body)
        if not name then return end
        if body.keep_alive == 0 and (body.prompt == nil or body.prompt == "") then
            loaded[name] = nil
            return res:json(200, { model = name, created_at = os.date("!%Y-%m-%dT%H:%M:%SZ"), response = "",
                                   done = true, done_reason = "unload" })
        end
        return chat(req, res, body, true)
    end
    return err(res, 404, "404 page not found")
end

local srv, lerr = http.listen({ host = "127.0.0.1", port = port, max_body = 64 * 2 ^ 20, handler = handler })
if not srv then
    io.stderr:write("Error: ", lerr, "\n")
    os.exit(1)
end
io.stderr:write(string.format("Listening on 127.0.0.1:%d (version 0.0.0-standin)\n", srv.port))
io.stdout:write(srv.port, "\n")
io.stdout:flush()
return standin.serve_forever(srv)
