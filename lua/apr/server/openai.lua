-- server/openai.lua — the OpenAI-compatible endpoints over the engine.
--
--   POST /v1/completions, POST /v1/chat/completions (streaming or not),
--   GET /v1/models, GET /v1/models/:id, POST /tokenize, POST /detokenize.
--
-- Request fields follow OpenAI's API reference; docs/server.md lists what
-- is supported. Every field is checked before anything is queued, and a bad
-- one is a 400 naming it (`param`). A request holds on to the engine that
-- was current when it arrived, so a hot reload never moves it mid-way.
local uv = require "luv"
local json = require "apr.json"
local utf8 = require "apr.text.utf8"
local http = require "apr.server.http"
local router = require "apr.server.router"
local tokens = require "apr.server.tokenize"

local M = {}

local fail = router.fail
local null = json.null

-- JSON objects with their keys in the order OpenAI's responses have them.
local function obj(...)
    local o = json.object()
    for i = 1, select("#", ...), 2 do
        local k, v = select(i, ...)
        if v == nil then v = null end
        o[k] = v
    end
    return o
end

local function random_id(prefix)
    local t = {}
    for i = 1, 24 do t[i] = string.format("%x", math.random(0, 15)) end
    return prefix .. table.concat(t)
end

------------------------------------------------------------------ checking fields

local function present(body, name)
    local v = body[name]
    if v == null then return nil end
    return v
end

local function number_field(body, name, lo, hi)
    local v = present(body, name)
    if v == nil then return nil end
    local n = json.tonumber(v)
    if type(v) == "boolean" or n == nil then fail(400, string.format("'%s' must be a number", name), name) end
    if n ~= n or n < lo or n > hi then
        fail(400, string.format("'%s' must be between %g and %g, got %s", name, lo, hi, tostring(n)), name)
    end
    return n
end

-- An integer bound as text: %d wraps beyond 2^63 (1e300 read "between
-- -9223372036854775808 and -9223372036854775808").
local function int_text(x)
    if math.abs(x) < 2 ^ 53 then return string.format("%d", x) end
    return string.format("%.0f", x)
end

local function int_field(body, name, lo, hi, hi_text)
    local v = present(body, name)
    if v == nil then return nil end
    local n = json.tonumber(v)
    if type(v) == "boolean" or n == nil or n ~= math.floor(n) then
        fail(400, string.format("'%s' must be an integer", name), name)
    end
    if n < lo or n > hi then
        fail(400, string.format("'%s' must be between %s and %s, got %s", name, int_text(lo), hi_text or int_text(hi),
            json.encode(v) or tostring(v)), name)
    end
    return n
end

local function bool_field(body, name)
    local v = present(body, name)
    if v == nil then return nil end
    if type(v) ~= "boolean" then fail(400, string.format("'%s' must be a boolean", name), name) end
    return v
end

local function stop_field(body)
    local v = present(body, "stop")
    if v == nil then return nil end
    if type(v) == "string" then return { v } end
    if not json.is_array(v) then fail(400, "'stop' must be a string or an array of strings", "stop") end
    if #v > 16 then fail(400, "'stop' holds at most 16 strings", "stop") end
    local list = {}
    for i, s in ipairs(v) do
        if type(s) ~= "string" then fail(400, "'stop' must be a string or an array of strings", "stop") end
        list[i] = s
    end
    return list
end

local function token_ids(v, n_vocab, name)
    local ids = {}
    for i, id in ipairs(v) do
        local n = json.tonumber(id)
        if type(id) == "boolean" or n == nil or n ~= math.floor(n) or n < 0 or n >= n_vocab then
            fail(400, string.format("'%s' must hold token ids in [0, %d); element %d is %s", name, n_vocab, i,
                json.encode(id) or "?"), name)
        end
        ids[i] = n
    end
    return ids
end

local function logit_bias_field(body, n_vocab)
    local v = present(body, "logit_bias")
    if v == nil then return nil end
    if not json.is_object(v) then fail(400, "'logit_bias' must be an object of token id -> bias", "logit_bias") end
    local bias = {}
    for _, k in ipairs(json.keys(v)) do
        -- Only a token id written as one ("42"): tonumber would also take
        -- "0x10", "1e1", " 7" and "-0" as ids.
        local id = (k == "0" or k:match("^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?$")) and tonumber(k) or nil
        local b = json.tonumber(v[k])
        if not id or id >= n_vocab then
            fail(400, string.format("'logit_bias' key '%s' is not a token id in [0, %d)", k, n_vocab), "logit_bias")
        end
        if not b or b < -100 or b > 100 then
            fail(400, "'logit_bias' values must be numbers in [-100, 100]", "logit_bias")
        end
        bias[id] = b <= -100 and -math.huge or b
    end
    return bias
end

-- The sampling options shared by both endpoints.
local function sampling(body, n_vocab)
    local o = {
        temperature = number_field(body, "temperature", 0, 2),
        top_p = number_field(body, "top_p", 0, 1),
        top_k = int_field(body, "top_k", 0, n_vocab),
        min_p = number_field(body, "min_p", 0, 1),
        presence_penalty = number_field(body, "presence_penalty", -2, 2),
        frequency_penalty = number_field(body, "frequency_penalty", -2, 2),
        repeat_penalty = number_field(body, "repeat_penalty", 0, 10),
        seed = int_field(body, "seed", -2 ^ 63, 2 ^ 64 - 1, "18446744073709551615"),
        stop = stop_field(body),
        logit_bias = logit_bias_field(body, n_vocab),
        ignore_eos = bool_field(body, "ignore_eos"),
    }
    if o.top_p == 0 then o.top_p = nil end  -- OpenAI's 0 would keep nothing; treat as off
    if o.seed then o.seed = o.seed % 2 ^ 53 end
    local n = int_field(body, "n", 1, 128)
    if n and n > 1 then fail(400, "'n' above 1 is not supported", "n") end
    local stream = bool_field(body, "stream") or false
    local so = present(body, "stream_options")
    local include_usage = false
    if so ~= nil then
        if not json.is_object(so) then fail(400, "'stream_options' must be an object", "stream_options") end
        include_usage = bool_field(so, "include_usage") or false
    end
    local model = present(body, "model")
    if model ~= nil and type(model) ~= "string" then fail(400, "'model' must be a string", "model") end
    return o, stream, include_usage
end

-- max_tokens: absent means the default; too many for the room the KV
-- cache's pool leaves (one request may use all of it) is a 400, as OpenAI
-- answers (rather than a silent cut). A prompt that leaves no room is the
-- prompt's fault: prompt_param names it ("prompt", "messages").
local function max_tokens_field(body, names, n_prompt, eng, default, prompt_param)
    local name, v
    for _, n in ipairs(names) do
        if present(body, n) ~= nil then name = n; v = int_field(body, n, 1, 2 ^ 31 - 1) break end
    end
    local room = eng.n_ctx - n_prompt
    if room < 1 then
        fail(400, string.format("the prompt is %d tokens, but a request may hold at most %d tokens (--ctx)",
            n_prompt, eng.n_ctx - 1), prompt_param, "context_length_exceeded")
    end
    if v == nil then return math.min(default or room, room) end
    if v > room then
        fail(400, string.format("max_tokens is %d, but the prompt's %d tokens leave room for %d (a request holds %d tokens)",
            v, n_prompt, room, eng.n_ctx), name, "context_length_exceeded")
    end
    return v
end

------------------------------------------------------------------ logprobs

-- A token's text for logprobs: its bytes when they are valid UTF-8, else
-- OpenAI's "bytes:\xNN" spelling (a piece of a multi-byte character).
local function token_entry(tok, id)
    local piece = tok:piece(id) or ""
    local bytes = json.array()
    for i = 1, #piece do bytes[i] = piece:byte(i) end
    if utf8.validate(piece) then return piece, bytes end
    return "bytes:" .. piece:gsub(".", function(c) return string.format("\\x%02x", c:byte()) end), bytes
end

local function chat_logprob(tok, id, logprob, top)
    local text, bytes = token_entry(tok, id)
    local alts = json.array()
    for i, t in ipairs(top or {}) do
        local tt, tb = token_entry(tok, t.id)
        alts[i] = obj("token", tt, "logprob", t.logprob, "bytes", tb)
    end
    return obj("token", text, "logprob", logprob, "bytes", bytes, "top_logprobs", alts)
end

------------------------------------------------------------------ generation

-- Runs one request on eng: streams through emit(piece) or collects; calls
-- finish(summary) at the end. Cancels if the client goes away. The access
-- log line reads req.prompt_tokens and req.ttft (seconds from the request's
-- arrival to its first token).
local function run(ctx, req, res, eng, ids, opts, on_piece)
    local t0 = req.t_start
    req.prompt_tokens = #ids
    local gen, err, kind = eng:start(ids, opts, function(p)
        local t = uv.hrtime()
        if p.ttft then
            req.ttft = (t - t0) * 1e-9
            ctx.metrics.ttft:observe(req.ttft)
        end
        if p.itl then ctx.metrics.itl:observe(p.itl) end
        on_piece(p)
    end)
    if not gen then
        if kind == "busy" then
            router.fail(503, "the server is overloaded: " .. err .. "; retry later", nil, "server_overloaded")
        end
        fail(400, err, nil, kind == "range" and "context_length_exceeded" or nil)
    end
    res:on_close(function() gen:cancel() end)
    return gen
end

-- The usage object of a finished request (its last piece): cached_tokens
-- are the prompt tokens the prefix cache supplied, as OpenAI reports them.
local function usage(p, n_completion)
    local n_prompt = p.n_prompt or 0
    return obj("prompt_tokens", n_prompt, "completion_tokens", n_completion, "total_tokens", n_prompt + n_completion,
               "prompt_tokens_details", obj("cached_tokens", p.n_cached or 0))
end

local function completion_tokens(p)
    return (p.n_generated or 0) - (p.stop_token and 1 or 0)
end

local function record(ctx, p)
    ctx.metrics.prompt_tokens:inc(p.n_prompt or 0)
    ctx.metrics.cached_tokens:inc(p.n_cached or 0)
    ctx.metrics.generated_tokens:inc(p.n_generated or 0)
end

-- Streams a request as server-sent events: send(p) writes each piece's
-- events; after the last piece come the usage event (when usage_event is
-- given: it wraps the usage object) and [DONE].
local function stream_events(ctx, req, res, eng, ids, opts, send, usage_event)
    http.await(function(done)
        run(ctx, req, res, eng, ids, opts, function(p)
            if p.error and not res.started then
                res:error(500, p.error)
                return done()
            end
            send(p)
            if p.finish_reason then
                record(ctx, p)
                if usage_event then res:sse(usage_event(usage(p, completion_tokens(p)))) end
                res:sse("[DONE]")
                res:finish()
                done()
            end
        end)
    end)
end

-- Runs a request to its end: its pieces, its whole text and its last piece;
-- nothing when there is nothing left to answer (an error was sent, or the
-- client went away).
local function collect(ctx, req, res, eng, ids, opts)
    local pieces, text = {}, {}
    local last = http.await(function(done)
        run(ctx, req, res, eng, ids, opts, function(p)
            pieces[#pieces + 1] = p
            text[#text + 1] = p.text
            if p.finish_reason then done(p) end
        end)
    end)
    record(ctx, last)
    if last.error then
        res:error(500, last.error)
        return nil
    end
    if last.finish_reason == "cancelled" then return nil end
    return pieces, table.concat(text), last
end

------------------------------------------------------------------ endpoints

local function current(ctx)
    local eng = ctx.engine()
    if not eng then fail(503, "the model is loading; retry shortly", nil, "model_loading") end
    return eng
end

-- The ids of a prompt's text (tokenize.lua: off the loop when long). A
-- text too long to fit whatever its tokens is refused by its length alone,
-- before any tokenizing: no token covers more than eng.max_token_bytes
-- bytes, so it has at least #text / max_token_bytes of them.
local function prompt_ids(eng, text, param)
    local most = eng.n_ctx - 1
    local least = math.ceil(#text / eng.max_token_bytes)
    if least > most then
        fail(400, string.format("the prompt is %d bytes, at least %d tokens, but a request may hold at most %d tokens " ..
            "(--ctx)", #text, least, most), param, "context_length_exceeded")
    end
    local ids, err = tokens.ids(eng.model, text, { special = true })
    if not ids then fail(500, "tokenizing the prompt failed: " .. tostring(err)) end
    return ids
end

local function check_object(req)
    local body = req.json
    if not json.is_object(body) then fail(400, "the request body must be a JSON object") end
    return body
end

-- The prompt of /v1/completions as token ids.
local function completion_prompt(body, eng)
    local tok = eng.model.tokenizer
    local p = present(body, "prompt")
    if p == nil then fail(400, "'prompt' is required", "prompt") end
    if json.is_array(p) and #p == 1 and (type(p[1]) == "string" or json.is_array(p[1])) then p = p[1] end
    local ids
    if type(p) == "string" then
        ids = prompt_ids(eng, p, "prompt")
    elseif json.is_array(p) then
        if #p == 0 then fail(400, "'prompt' is empty", "prompt") end
        if type(p[1]) == "string" or json.is_array(p[1]) then
            fail(400, "only one prompt per request is supported", "prompt")
        end
        ids = token_ids(p, eng.model.info.n_vocab, "prompt")
    else
        fail(400, "'prompt' must be a string or an array of token ids", "prompt")
    end
    tok:with_bos(ids)
    if #ids == 0 then fail(400, "'prompt' is empty", "prompt") end
    return ids
end

local function completions(ctx, req, res)
    local eng = current(ctx)
    local body = check_object(req)
    local opts, stream, include_usage = sampling(body, eng.model.info.n_vocab)
    local ids = completion_prompt(body, eng)
    opts.max_tokens = max_tokens_field(body, { "max_tokens" }, #ids, eng, 16, "prompt")
    local lp = int_field(body, "logprobs", 0, 20)
    if lp then opts.logprobs, opts.top_logprobs = true, lp end
    if bool_field(body, "echo") then fail(400, "'echo' is not supported", "echo") end
    if present(body, "suffix") ~= nil then fail(400, "'suffix' is not supported", "suffix") end

    local id, created, name = random_id("cmpl-"), os.time(), ctx.model_name()
    local tok = eng.model.tokenizer
    local function logprobs_of(pieces)
        if not lp then return nil end
        local tokens, lps, tops, offsets = json.array(), json.array(), json.array(), json.array()
        local offset = 0
        for _, p in ipairs(pieces) do
            if p.token and not p.stop_token then
                tokens[#tokens + 1] = (token_entry(tok, p.token))
                lps[#lps + 1] = p.logprob
                local t = json.object()
                for _, alt in ipairs(p.top or {}) do t[(token_entry(tok, alt.id))] = alt.logprob end
                tops[#tops + 1] = t
                offsets[#offsets + 1] = offset
                offset = offset + #p.text
            end
        end
        return obj("tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offsets)
    end

    -- The response, and each event of a stream: usage only where given.
    local function response(choices, u)
        local o = obj("id", id, "object", "text_completion", "created", created, "model", name, "choices", choices)
        if u then o.usage = u end
        return o
    end

    if stream then
        return stream_events(ctx, req, res, eng, ids, opts, function(p)
            if p.text ~= "" or p.finish_reason then
                res:sse(response(json.array({ obj("text", p.text, "index", 0, "logprobs", logprobs_of({ p }),
                    "finish_reason", p.finish_reason ~= "cancelled" and p.finish_reason or nil) })))
            end
        end, include_usage and function(u) return response(json.array(), u) end)
    end

    local pieces, text, last = collect(ctx, req, res, eng, ids, opts)
    if not pieces then return end
    local choice = obj("text", text, "index", 0, "logprobs", logprobs_of(pieces), "finish_reason", last.finish_reason)
    res:json(200, response(json.array({ choice }), usage(last, completion_tokens(last))))
end

-- Chat messages as the template wants them: content parts joined to text.
local ROLES = { system = true, developer = true, user = true, assistant = true, tool = true }
local function chat_messages(body)
    local msgs = present(body, "messages")
    if not json.is_array(msgs) or #msgs == 0 then
        fail(400, "'messages' must be a non-empty array", "messages")
    end
    for i, m in ipairs(msgs) do
        local where = string.format("messages[%d]", i - 1)
        if not json.is_object(m) then fail(400, where .. " must be an object", where) end
        if type(m.role) ~= "string" or not ROLES[m.role] then
            fail(400, where .. ".role must be one of system, developer, user, assistant, tool", where .. ".role")
        end
        local c = m.content
        if json.is_array(c) then
            local parts = {}
            for k, part in ipairs(c) do
                if not json.is_object(part) or part.type ~= "text" or type(part.text) ~= "string" then
                    fail(400, string.format("%s.content[%d]: only text parts are supported", where, k - 1),
                        where .. ".content")
                end
                parts[#parts + 1] = part.text
            end
            m.content = table.concat(parts, "\n")
        elseif c ~= nil and c ~= null and type(c) ~= "string" then
            fail(400, where .. ".content must be a string or an array of text parts", where .. ".content")
        elseif (c == nil or c == null) and m.role ~= "assistant" then
            fail(400, where .. ".content is required", where .. ".content")
        end
    end
    return msgs
end

local function chat_completions(ctx, req, res)
    local eng = current(ctx)
    local body = check_object(req)
    local opts, stream, include_usage = sampling(body, eng.model.info.n_vocab)
    local msgs = chat_messages(body)
    local tools = present(body, "tools")
    if tools ~= nil and not json.is_array(tools) then fail(400, "'tools' must be an array", "tools") end
    local ok, prompt, terr = pcall(eng.model.try_render, eng.model, msgs, { tools = tools })
    if not ok or not prompt then
        fail(400, "the model's chat template failed on these messages: " .. tostring(ok and terr or prompt), "messages")
    end
    local ids = prompt_ids(eng, prompt, "messages")
    local tok = eng.model.tokenizer
    tok:with_bos(ids)
    opts.max_tokens = max_tokens_field(body, { "max_completion_tokens", "max_tokens" }, #ids, eng, nil, "messages")
    local want_lp = bool_field(body, "logprobs") or false
    local top = int_field(body, "top_logprobs", 0, 20)
    if top and not want_lp then fail(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs") end
    if want_lp then opts.logprobs, opts.top_logprobs = true, top or 0 end

    local id, created, name = random_id("chatcmpl-"), os.time(), ctx.model_name()
    local function lp_list(pieces)
        if not want_lp then return nil end
        local content = json.array()
        for _, p in ipairs(pieces) do
            if p.token and not p.stop_token then content[#content + 1] = chat_logprob(tok, p.token, p.logprob, p.top) end
        end
        return obj("content", content, "refusal", nil)
    end
    -- The response ("chat.completion") or a stream's event
    -- ("chat.completion.chunk"): usage only where given.
    local function response(object, choices, u)
        local o = obj("id", id, "object", object, "created", created, "model", name,
            "system_fingerprint", nil, "choices", choices)
        if u then o.usage = u end
        return o
    end
    local function chunk(delta, finish, pieces)
        return response("chat.completion.chunk", json.array({
            obj("index", 0, "delta", delta, "logprobs", pieces and lp_list(pieces) or nil, "finish_reason", finish) }))
    end

    if stream then
        local started = false
        return stream_events(ctx, req, res, eng, ids, opts, function(p)
            if not started then
                started = true
                res:sse(chunk(obj("role", "assistant", "content", ""), nil))
            end
            if p.text ~= "" then res:sse(chunk(obj("content", p.text), nil, { p })) end
            if p.finish_reason then
                local reason = p.finish_reason ~= "cancelled" and p.finish_reason or nil
                res:sse(chunk(json.object(), reason, (p.text == "" and p.token and not p.stop_token) and { p } or nil))
            end
        end, include_usage and function(u) return response("chat.completion.chunk", json.array(), u) end)
    end

    local pieces, text, last = collect(ctx, req, res, eng, ids, opts)
    if not pieces then return end
    local message = obj("role", "assistant", "content", text, "refusal", nil)
    res:json(200, response("chat.completion", json.array({ obj("index", 0, "message", message,
        "logprobs", lp_list(pieces), "finish_reason", last.finish_reason) }), usage(last, completion_tokens(last))))
end

local function model_entry(ctx)
    return obj("id", ctx.model_name(), "object", "model", "created", ctx.loaded_at(), "owned_by", "apr")
end

local function tokenize(ctx, req, res)
    local eng = current(ctx)
    local body = check_object(req)
    local content = present(body, "content")
    if type(content) ~= "string" then fail(400, "'content' must be a string", "content") end
    local special = bool_field(body, "add_special") or false
    local parse_special = bool_field(body, "parse_special")
    local with_pieces = bool_field(body, "with_pieces") or false
    local tok = eng.model.tokenizer
    if not with_pieces then
        -- The answer's JSON comes from the worker as it is (tokenize.lua).
        local list, terr = tokens.json(eng.model, content, { special = parse_special ~= false })
        if not list then fail(500, "tokenizing failed: " .. tostring(terr)) end
        if special and tok.bos and tok.bos >= 0 and not list:match("^%[" .. tok.bos .. "[,%]]") then
            list = "[" .. tok.bos .. (list == "[]" and "]" or "," .. list:sub(2))
        end
        return res:json(200, '{"tokens":' .. list .. "}")
    end
    local ids, terr = tokens.ids(eng.model, content, { special = parse_special ~= false })
    if not ids then fail(500, "tokenizing failed: " .. tostring(terr)) end
    if special and tok.bos and tok.bos >= 0 and ids[1] ~= tok.bos then table.insert(ids, 1, tok.bos) end
    local list = json.array()
    for i, t in ipairs(ids) do
        list[i] = with_pieces and obj("id", t, "piece", (token_entry(tok, t))) or t
    end
    res:json(200, obj("tokens", list))
end

local function detokenize(ctx, req, res)
    local eng = current(ctx)
    local body = check_object(req)
    local tokens = present(body, "tokens")
    if not json.is_array(tokens) then fail(400, "'tokens' must be an array of token ids", "tokens") end
    local ids = token_ids(tokens, eng.model.info.n_vocab, "tokens")
    local text, err = eng.model:detokenize(ids)
    if not text then fail(400, err, "tokens") end
    res:json(200, obj("content", text))
end

-- install(app, ctx): the endpoints on app. ctx supplies engine() (the
-- current engine, nil while loading), model_name(), loaded_at() and
-- metrics (ttft, itl histograms; prompt_tokens, generated_tokens counters).
function M.install(app, ctx)
    app:post("/v1/completions", function(req, res) return completions(ctx, req, res) end)
    app:post("/v1/chat/completions", function(req, res) return chat_completions(ctx, req, res) end)
    app:get("/v1/models", function(req, res)
        local data = json.array()
        if ctx.engine() then data[1] = model_entry(ctx) end
        res:json(200, obj("object", "list", "data", data))
    end)
    app:get("/v1/models/:id", function(req, res)
        if not ctx.engine() or req.params.id ~= ctx.model_name() then
            fail(404, string.format("The model '%s' does not exist", req.params.id), "model", "model_not_found")
        end
        res:json(200, model_entry(ctx))
    end)
    app:post("/tokenize", function(req, res) return tokenize(ctx, req, res) end)
    app:post("/detokenize", function(req, res) return detokenize(ctx, req, res) end)
end

return M
