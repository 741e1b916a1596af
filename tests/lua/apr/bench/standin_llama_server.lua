-- standin_llama_server.lua — a stand-in for llama.cpp's llama-server with
-- set delays and token rates (tests/lua/apr/bench/standin.lua), faithful
-- to what apr bench relies on in llama.cpp's tools/server (upstream
-- 34af94c): the command line (-m, --host, --port, -c, -np, -fa, -ngl, -t,
-- -tb, --version), /health answering 503 "Loading model" until the model
-- is loaded, /props, POST /v1/completions (text_completion chunks) and
-- POST /v1/chat/completions streaming chat.completion.chunk events (role first, a token per event, the
-- finish_reason chunk, the usage chunk with an empty choices list when
-- stream_options.include_usage, timings on the last one, then [DONE]);
-- requests beyond the slots wait, a request longer than a slot's context
-- is refused as llama-server refuses it.
--
--   apr run tests/lua/apr/bench/standin_llama_server.lua -m MODEL --port P -c 4096 -np 4 -fa on
package.path = (arg[0]:match("^(.*)/tests/") or ".") .. "/?.lua;" .. package.path
local uv = require "luv"
local http = require "apr.server.http"
local json = require "apr.json"
local standin = require "tests.lua.apr.bench.standin"

local VERSION = "version: 7777 (5t4nd1n)\nbuilt with lua (apr tests) for x86_64-linux-gnu"

local opts = { host = "127.0.0.1", port = 8080, ctx = 4096, parallel = -1, fa = "auto", ngl = -1, threads = -1 }
local flags = {
    ["-m"] = "model", ["--model"] = "model", ["--host"] = "host", ["--port"] = "port", ["-c"] = "ctx",
    ["--ctx-size"] = "ctx", ["-np"] = "parallel", ["--parallel"] = "parallel", ["-fa"] = "fa",
    ["--flash-attn"] = "fa", ["-ngl"] = "ngl", ["--n-gpu-layers"] = "ngl", ["-t"] = "threads",
    ["--threads"] = "threads", ["-tb"] = "threads_batch", ["--threads-batch"] = "threads_batch",
}
local i = 1
while i <= #arg do
    local a = arg[i]
    if a == "--version" then
        io.stderr:write(VERSION, "\n")
        os.exit(0)
    end
    local key = flags[a]
    if not key then
        io.stderr:write("error: invalid argument: ", a, "\n")
        os.exit(1)
    end
    local v = arg[i + 1]
    if v == nil then
        io.stderr:write("error: expected value for argument: ", a, "\n")
        os.exit(1)
    end
    opts[key] = tonumber(v) or v
    i = i + 2
end
if opts.fa ~= "on" and opts.fa ~= "off" and opts.fa ~= "auto" then
    io.stderr:write(string.format("error: unknown value for --flash-attn: '%s'\n", tostring(opts.fa)))
    os.exit(1)
end
if not opts.model or not io.open(opts.model, "rb") then
    io.stderr:write("error: failed to load model '", tostring(opts.model), "'\n")
    os.exit(1)
end
if opts.parallel == -1 then opts.parallel = 4 end
local slot_ctx = math.floor(opts.ctx / opts.parallel)
local slots = standin.slots(opts.parallel)
local t_loaded = standin.now() + standin.cfg.load_ms / 1000
local model_name = opts.model:match("([^/]+)$")
standin.register_gpu_process()

local function err_json(res, code, message, etype)
    res:json(code, { error = { code = code, message = message, type = etype } })
end

local function chunk(object, id, created, choices, extra)
    local c = { choices = json.array(choices), created = created, id = id, model = model_name,
                system_fingerprint = "b7777-5t4nd1n", object = object }
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
end

-- POST /v1/chat/completions (completions = false) or /v1/completions.
local function generate(req, res, completions)
    local body, jerr = json.decode(req.body)
    if type(body) ~= "table" then return err_json(res, 400, "Failed to parse JSON: " .. tostring(jerr), "invalid_request_error") end
    local n_prompt
    if completions then
        if type(body.prompt) ~= "string" then return err_json(res, 400, "\"prompt\" must be a string", "invalid_request_error") end
        n_prompt = standin.count_tokens(body.prompt)
    else
        if type(body.messages) ~= "table" or #body.messages == 0 then
            return err_json(res, 400, "'messages' is required", "invalid_request_error")
        end
        local text = ""
        for _, m in ipairs(body.messages) do
            if type(m) ~= "table" or type(m.content) ~= "string" then
                return err_json(res, 400, "Missing 'content'", "invalid_request_error")
            end
            text = text .. m.content
        end
        n_prompt = standin.count_tokens(text) + 8 * #body.messages  -- the chat template's tokens
    end
    local n_predict = tonumber(body.max_tokens) or tonumber(body.n_predict) or 16
    if n_prompt + n_predict > slot_ctx then
        return err_json(res, 400, "the request exceeds the available context size, try increasing it", "exceed_context_size_error")
    end
    standin.count_request()
    slots.acquire()
    local t0 = standin.now()
    standin.prefill(n_prompt)
    local t_prompt = standin.now()
    local id, created = "chatcmpl-standin" .. req.id, os.time()
    local stream = body.stream == true
    local include_usage = type(body.stream_options) == "table" and body.stream_options.include_usage == true
    local pieces = {}
    local alive = true
    local function choice(piece, finish)
        if completions then return { text = piece or "", index = 0, logprobs = json.null, finish_reason = finish or json.null } end
        return { finish_reason = finish or json.null, index = 0, delta = piece and { content = piece } or {} }
    end
    local object = completions and "text_completion" or "chat.completion.chunk"
    if stream and not completions then
        res:sse(chunk(object, id, created, { { finish_reason = json.null, index = 0, delta = { role = "assistant", content = json.null } } }))
    end
    standin.decode(n_predict, function(k)
        local piece = k == 1 and "tok" or " tok"
        pieces[k] = piece
        if stream then
            alive = res:sse(chunk(object, id, created, { choice(piece) }))
            return alive
        end
    end)
    local t_end = standin.now()
    slots.release()
    if not alive then return end
    local prompt_ms, predicted_ms = (t_prompt - t0) * 1000, (t_end - t_prompt) * 1000
    local timings = {
        cache_n = 0, prompt_n = n_prompt, prompt_ms = prompt_ms, prompt_per_token_ms = prompt_ms / n_prompt,
        prompt_per_second = n_prompt / (prompt_ms / 1000), predicted_n = n_predict, predicted_ms = predicted_ms,
        predicted_per_token_ms = predicted_ms / n_predict, predicted_per_second = n_predict / (predicted_ms / 1000),
    }
    local usage = { completion_tokens = n_predict, prompt_tokens = n_prompt, total_tokens = n_prompt + n_predict,
                    prompt_tokens_details = { cached_tokens = 0 } }
    if not stream then
        return res:json(200, { choices = json.array({ { finish_reason = "length", index = 0,
            message = { role = "assistant", content = table.concat(pieces) } } }), created = created, id = id,
            model = model_name, object = "chat.completion", usage = usage, timings = timings })
    end
    local last = chunk(object, id, created, { choice(nil, "length") })
    if include_usage then
        res:sse(last)
        last = chunk(object, id, created, {}, { usage = usage })
    end
    last.timings = timings
    res:sse(last)
    res:sse("[DONE]")
    res:finish()
end

local srv, err = http.listen({
    host = opts.host, port = opts.port, max_body = 16 * 2 ^ 20,
    handler = function(req, res)
        if standin.now() < t_loaded and req.path ~= "/" then
            return err_json(res, 503, "Loading model", "unavailable_error")
        end
        if req.path == "/health" and req.method == "GET" then
            return res:json(200, { status = "ok" })
        elseif req.path == "/props" and req.method == "GET" then
            return res:json(200, { default_generation_settings = { n_ctx = slot_ctx }, total_slots = opts.parallel,
                                   model_path = opts.model, build_info = "b7777-5t4nd1n" })
        elseif (req.path == "/v1/chat/completions" or req.path == "/chat/completions") and req.method == "POST"
            and standin.cfg.only_api ~= "completions" then
            return generate(req, res, false)
        elseif (req.path == "/v1/completions" or req.path == "/completions") and req.method == "POST" then
            return generate(req, res, true)
        end
        return err_json(res, 404, "File Not Found", "not_found_error")
    end,
})
if not srv then
    io.stderr:write("error: ", err, "\n")
    os.exit(1)
end
io.stderr:write(string.format("main: server is listening on http://%s:%d - starting the main loop\n", opts.host, srv.port))
return standin.serve_forever(srv)
