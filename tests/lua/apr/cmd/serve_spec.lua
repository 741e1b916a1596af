-- serve_spec.lua — `apr serve` on the tiny fixture model, over loopback:
-- every endpoint, streaming, the API key, each error status, cancellation
-- on disconnect, SIGTERM drain, hot reload under load, a route script,
-- batching that does not change greedy results, and a chat's next turn
-- from the prefix cache.
local json = require "apr.json"
local client = require "tests.lua.apr.server.client"
local serve = require "tests.lua.apr.server.serve_helper"

local function post(port, path, body, headers)
    local text = type(body) == "string" and body or json.encode(body)
    local r = assert(client.request(port, "POST", path, text, headers))
    r.json = json.decode(r.body)
    return r
end

local function get(port, path, headers)
    local r = assert(client.request(port, "GET", path, nil, headers))
    r.json = json.decode(r.body)
    return r
end

-- The value of a metric line (labels as written), or nil.
local function metric(text, series)
    local v = text:match("\n" .. series:gsub("[%[%]%(%)%.%-%+%*%?%^%$]", "%%%0") .. " ([^\n]+)")
    return tonumber(v)
end

describe("apr serve", function()
    local s
    setup(function() s = serve.start("--parallel 4 --ctx 2048") end)
    teardown(function() if s then s:stop() end end)

    it("reports health, models, and tokenizes both ways", function()
        local r = get(s.port, "/health")
        assert.equal(200, r.status)
        assert.equal("ok", r.json.status)
        r = get(s.port, "/v1/models")
        assert.equal("list", r.json.object)
        assert.equal("tiny-q8_0", r.json.data[1].id)
        assert.equal(200, get(s.port, "/v1/models/tiny-q8_0").status)
        assert.equal(404, get(s.port, "/v1/models/other").status)
        r = post(s.port, "/tokenize", { content = "Hello world" })
        assert.equal(200, r.status)
        assert.is_true(#r.json.tokens > 1)
        local back = post(s.port, "/detokenize", { tokens = r.json.tokens })
        assert.equal("Hello world", back.json.content)
    end)

    it("completes text with usage, finish_reason and logprobs", function()
        local r = post(s.port, "/v1/completions", { prompt = "Once upon a time", max_tokens = 6, temperature = 0,
                                                    logprobs = 2 })
        assert.equal(200, r.status)
        local c = r.json.choices[1]
        assert.equal("text_completion", r.json.object)
        assert.equal("length", c.finish_reason)
        assert.equal(6, r.json.usage.completion_tokens)
        assert.equal(r.json.usage.prompt_tokens + 6, r.json.usage.total_tokens)
        assert.equal(6, #c.logprobs.tokens)
        assert.equal(c.text, table.concat(c.logprobs.tokens))
        for _, lp in ipairs(c.logprobs.token_logprobs) do assert.is_true(json.tonumber(lp) <= 0) end
        -- The same seed gives the same sample.
        local a = post(s.port, "/v1/completions", { prompt = "Hi", max_tokens = 8, temperature = 0.9, seed = 7 })
        local b = post(s.port, "/v1/completions", { prompt = "Hi", max_tokens = 8, temperature = 0.9, seed = 7 })
        assert.equal(a.json.choices[1].text, b.json.choices[1].text)
    end)

    it("stops at a stop string, which is not part of the text", function()
        local full = post(s.port, "/v1/completions", { prompt = "The", max_tokens = 16, temperature = 0 })
        local text = full.json.choices[1].text
        -- Two ASCII characters from the middle (a cut through a multi-byte
        -- character would not be valid UTF-8).
        local at = text:find("[%w ][%w ]", 3)
        assert.is_not_nil(at, text)
        local stop = text:sub(at, at + 1)
        local r = post(s.port, "/v1/completions", { prompt = "The", max_tokens = 16, temperature = 0, stop = { stop } })
        assert.equal(200, r.status, r.body)
        assert.equal("stop", r.json.choices[1].finish_reason)
        assert.equal(text:sub(1, (text:find(stop, 1, true)) - 1), r.json.choices[1].text)
    end)

    it("chats with the model's template, streaming or not", function()
        local body = { messages = { { role = "user", content = "Hi" } }, max_tokens = 5, temperature = 0,
                       logprobs = true, top_logprobs = 2 }
        local r = post(s.port, "/v1/chat/completions", body)
        assert.equal(200, r.status)
        assert.equal("chat.completion", r.json.object)
        local msg = r.json.choices[1].message
        assert.equal("assistant", msg.role)
        assert.equal(5, r.json.usage.completion_tokens)
        assert.equal(5, #r.json.choices[1].logprobs.content)
        assert.equal(2, #r.json.choices[1].logprobs.content[1].top_logprobs)

        body.stream = true
        body.stream_options = { include_usage = true }
        local st = assert(client.request(s.port, "POST", "/v1/chat/completions", json.encode(body)))
        assert.equal("text/event-stream", st.headers["content-type"])
        local events = client.sse_events(st.body)
        assert.equal("[DONE]", events[#events])
        local text, finish, usage = {}, nil, nil
        for i = 1, #events - 1 do
            local chunk = assert(json.decode(events[i]))
            assert.equal("chat.completion.chunk", chunk.object)
            if #chunk.choices > 0 then
                local d = chunk.choices[1].delta
                if i == 1 then assert.equal("assistant", d.role) end
                if type(d.content) == "string" then text[#text + 1] = d.content end
                if chunk.choices[1].finish_reason ~= json.null then finish = chunk.choices[1].finish_reason end
            else
                usage = chunk.usage
            end
        end
        assert.equal(msg.content, table.concat(text))
        assert.equal("length", finish)
        assert.equal(5, usage.completion_tokens)

        -- The access log gives each generation's prompt size and time to
        -- first token (the first request's line: written before its answer
        -- was complete, so surely there by now).
        local line = s:log():match("[^\n]*path=/v1/chat/completions status=200[^\n]*")
        assert.truthy(line)
        assert.equal(r.json.usage.prompt_tokens, tonumber(line:match(" prompt_tokens=(%d+)")))
        local ttft, dur = tonumber(line:match(" ttft_s=([%d.]+)")), tonumber(line:match(" duration_s=([%d.]+)"))
        assert.is_true(ttft > 0 and ttft <= dur)
    end)

    it("answers bad requests with 400 naming the field, and 404/405", function()
        local cases = {
            { "/v1/completions", "{not json", nil },
            { "/v1/completions", '{"prompt": "\xff"}', nil },
            { "/v1/completions", { prompt = "x", temperature = 5 }, "temperature" },
            { "/v1/completions", { prompt = "x", max_tokens = -1 }, "max_tokens" },
            { "/v1/completions", { prompt = "x", max_tokens = 10 ^ 9 }, "max_tokens" },
            { "/v1/completions", { max_tokens = 3 }, "prompt" },
            { "/v1/completions", { prompt = { 1, 99999999 } }, "prompt" },
            { "/v1/completions", { prompt = "x", stop = 5 }, "stop" },
            { "/v1/chat/completions", { messages = {} }, "messages" },
            { "/v1/chat/completions", { messages = { { role = "wizard", content = "x" } } }, "messages[0].role" },
            { "/v1/chat/completions", { messages = { { role = "user", content = "x" } }, top_logprobs = 3 },
              "top_logprobs" },
        }
        for _, c in ipairs(cases) do
            local r = post(s.port, c[1], c[2])
            assert.equal(400, r.status, r.body)
            assert.equal("invalid_request_error", r.json.error.type)
            assert.equal(c[3] or json.null, r.json.error.param)
        end
        assert.equal(404, get(s.port, "/v2/nothing").status)
        local r = get(s.port, "/v1/completions")
        assert.equal(405, r.status)
        assert.equal("POST", r.headers.allow)
    end)

    it("gives exactly the same greedy tokens to 16 concurrent requests as to each alone", function()
        local function body(i)
            return json.encode({ prompt = "Story " .. i .. ":", max_tokens = 12, temperature = 0, logprobs = 0 })
        end
        local alone = {}
        for i = 1, 16 do
            alone[i] = post(s.port, "/v1/completions", body(i)).json.choices[1]
        end
        local exs = {}
        for i = 1, 16 do exs[i] = { port = s.port, send = client.raw("POST", "/v1/completions", body(i)) } end
        client.run(exs, 60)
        for i = 1, 16 do
            local r = exs[i].responses[1]
            assert.equal(200, r.status)
            local c = json.decode(r.body).choices[1]
            assert.equal(alone[i].text, c.text)
            assert.same(alone[i].logprobs.tokens, c.logprobs.tokens)
        end
    end)

    it("cancels a generation whose client disconnects mid-stream", function()
        local before = get(s.port, "/metrics").body
        local gen_before = metric(before, "apr_generated_tokens_total") or 0
        local body = json.encode({ prompt = "Go on", max_tokens = 500, stream = true, ignore_eos = true })
        local ex = { port = s.port, send = client.raw("POST", "/v1/completions", body), close_after_bytes = 600 }
        client.run({ ex }, 20)
        assert.is_true(#ex.raw >= 600)
        local running = 1
        for _ = 1, 100 do
            local m = get(s.port, "/metrics").body
            running = metric(m, "apr_requests_running")
            if running == 0 then break end
            serve.sleep(20)
        end
        assert.equal(0, running)
        local after = get(s.port, "/metrics").body
        -- Cut long before its 500 tokens.
        assert.is_true((metric(after, "apr_generated_tokens_total") or 0) - gen_before < 400)
        assert.equal(0, metric(after, "apr_kv_cache_used_blocks"))
        assert.truthy(s:log():find("aborted", 1, true))
    end)

    it("answers a chat's second turn from the first's cached blocks, as a cold server does", function()
        local before = get(s.port, "/metrics").body
        local messages = {
            { role = "system", content = string.rep("You are a terse assistant that answers in one line. ", 6) },
            { role = "user", content = "Name three colours." },
        }
        local first = post(s.port, "/v1/chat/completions", { messages = messages, max_tokens = 12, temperature = 0 })
        assert.equal(200, first.status, first.body)
        -- (earlier requests' cached blocks may share its first tokens, not a whole block)
        assert.is_true(first.json.usage.prompt_tokens_details.cached_tokens < 32)
        messages[3] = { role = "assistant", content = first.json.choices[1].message.content }
        messages[4] = { role = "user", content = "And three more?" }
        local second = post(s.port, "/v1/chat/completions", { messages = messages, max_tokens = 12, temperature = 0 })
        assert.equal(200, second.status, second.body)
        local cached = second.json.usage.prompt_tokens_details.cached_tokens
        assert.is_true(cached >= 64 and cached < second.json.usage.prompt_tokens, tostring(cached))
        local after = get(s.port, "/metrics").body
        assert.is_true(metric(after, "apr_prompt_tokens_cached_total") - (metric(before, "apr_prompt_tokens_cached_total") or 0)
            >= cached)
        assert.is_true(metric(after, "apr_prefix_cache_hit_tokens_total") >= cached)
        assert.is_number(metric(after, "apr_kv_cache_cached_blocks"))
        assert.is_number(metric(after, "apr_kv_cache_preemptions_total"))
        -- a server without the prefix cache computes all of it, and answers the same
        local cold = serve.start("--parallel 1 --ctx 2048 --no-prefix-cache")
        local r = post(cold.port, "/v1/chat/completions", { messages = messages, max_tokens = 12, temperature = 0 })
        cold:stop()
        assert.equal(0, r.json.usage.prompt_tokens_details.cached_tokens)
        assert.equal(second.json.usage.prompt_tokens, r.json.usage.prompt_tokens)
        assert.equal(r.json.choices[1].message.content, second.json.choices[1].message.content)
    end)

    it("serves /metrics that promtool accepts", function()
        post(s.port, "/v1/completions", { prompt = "x", max_tokens = 2 })
        local r = get(s.port, "/metrics")
        assert.equal(200, r.status)
        assert.truthy(r.headers["content-type"]:find("text/plain", 1, true))
        for _, name in ipairs({ "apr_http_requests_total", "apr_prompt_tokens_total", "apr_generated_tokens_total",
                                "apr_time_to_first_token_seconds_bucket", "apr_inter_token_latency_seconds_bucket",
                                "apr_requests_running", "apr_requests_queued", "apr_kv_cache_used_blocks",
                                "apr_kv_cache_total_blocks", "apr_gpu_memory_used_bytes", "apr_model_weight_bytes",
                                "apr_kv_cache_cached_blocks", "apr_prompt_tokens_cached_total",
                                "apr_prefix_cache_hit_tokens_total", "apr_kv_cache_preemptions_total" }) do
            assert.truthy(r.body:find(name, 1, true), name)
        end
        assert.is_true(metric(r.body, 'apr_http_requests_total{route="/v1/completions",status="200"}') >= 1)
        local has_promtool = os.execute("command -v promtool >/dev/null 2>&1")
        if has_promtool ~= 0 and has_promtool ~= true then return pending("promtool not installed (make deps)") end
        local path = os.tmpname()
        local f = assert(io.open(path, "wb"))
        f:write(r.body)
        f:close()
        local p = assert(io.popen("promtool check metrics < " .. path .. " 2>&1; echo rc=$?"))
        local out = p:read("*a")
        p:close()
        os.remove(path)
        assert.truthy(out:find("rc=0", 1, true), out)
    end)
end)

describe("apr serve with an API key, a small queue and a routes script", function()
    local s
    local key = { Authorization = "Bearer sk-spec" }
    setup(function()
        s = serve.start("--api-key sk-spec --parallel 1 --queue 0 --ctx 1024 --max-body 4K " ..
                        "--routes demos/serve_routes.lua")
    end)
    teardown(function() if s then s:stop() end end)

    it("needs the key everywhere but /health", function()
        assert.equal(200, get(s.port, "/health").status)
        local r = post(s.port, "/v1/completions", { prompt = "x", max_tokens = 1 })
        assert.equal(401, r.status)
        assert.equal("invalid_api_key", r.json.error.code)
        assert.equal(401, get(s.port, "/metrics").status)
        assert.equal(200, post(s.port, "/v1/completions", { prompt = "x", max_tokens = 1 }, key).status)
    end)

    it("answers 413 over --max-body and 503 with Retry-After when the queue is full", function()
        local r = post(s.port, "/v1/completions", { prompt = string.rep("a", 5000) }, key)
        assert.equal(413, r.status)
        local exs = {}
        for i = 1, 4 do
            exs[i] = { port = s.port, send = client.raw("POST", "/v1/completions",
                json.encode({ prompt = "x" .. i, max_tokens = 200, ignore_eos = true }), key) }
        end
        client.run(exs, 60)
        local busy = 0
        for _, ex in ipairs(exs) do
            local resp = ex.responses[1]
            if resp.status == 503 then
                busy = busy + 1
                assert.is_not_nil(resp.headers["retry-after"])
                assert.equal("server_overloaded", json.decode(resp.body).error.code)
            else
                assert.equal(200, resp.status)
            end
        end
        assert.is_true(busy >= 1 and busy <= 3)
    end)

    it("runs the routes script: new routes, overrides, and a 500 for its errors", function()
        local r = post(s.port, "/v1/count-tokens", { text = "Hello world" }, key)
        assert.equal(200, r.status)
        assert.is_true(r.json.tokens > 1)
        assert.equal("tiny-q8_0", get(s.port, "/health").json.model)
        local st = assert(client.request(s.port, "POST", "/v1/story", json.encode({ topic = "x", max_tokens = 6 }), key))
        local events = client.sse_events(st.body)
        assert.equal("[DONE]", events[#events])
        local summary = json.decode(events[#events - 1])
        assert.equal(6, summary.tokens)
        local b = get(s.port, "/v1/broken", key)
        assert.equal(500, b.status)
        assert.truthy(b.json.error.message:find("broken on purpose", 1, true))
        assert.equal(200, get(s.port, "/health").status)  -- still up
    end)
end)

describe("apr serve lifecycle", function()
    it("exits 1 with one line when the port is taken (no crash while closing the listener)", function()
        local h = require "tests.lua.helpers"
        local uv = require "luv"
        local taken = uv.new_tcp()
        assert(taken:bind("127.0.0.1", 0))
        assert(taken:listen(1, function() end))
        local port = taken:getsockname().port
        local r = h.apr("serve tests/fixtures/models/tiny-q8_0.gguf --port " .. port)
        taken:close()
        assert.equal(1, r.code)
        assert.equal(string.format("apr serve: cannot listen on 127.0.0.1:%d: EADDRINUSE: address already in use\n",
            port), r.err)
    end)

    it("answers 503 while the model loads, and exits 1 when it cannot be loaded", function()
        -- The loader's open() of the file waits until the spec lets it
        -- through (hold_open.c), so the server listens with no model yet.
        local hd = require("tests.lua.helpers").tmpdir()
        local env, release = serve.hold_open(hd)
        if not env then pending(release) return end
        local held = hd .. "/held.gguf"
        local f = assert(io.open(held, "wb"))
        f:write("not a gguf")
        f:close()
        local s = serve.start("", held, "loading model", env)
        local ok, err = pcall(function()
            local h = get(s.port, "/health")
            assert.equal(503, h.status)
            assert.equal("loading", h.json.status)
            assert.is_not_nil(h.headers["retry-after"])
            local r = post(s.port, "/v1/completions", { prompt = "x" })
            assert.equal(503, r.status)
            assert.equal("model_loading", r.json.error.code)
            assert.same({}, get(s.port, "/v1/models").json.data)
            -- Let the loader through: the file is no GGUF file.
            assert(io.open(release, "wb")):close()
            assert.equal(1, s:wait(10))
            assert.truthy(s:log():find("cannot load model", 1, true))
        end)
        s:stop()
        require("tests.lua.helpers").rmtree(hd)
        assert(ok, err)
    end)

    it("drains on SIGTERM: the stream in progress finishes, then exit 0", function()
        local s = serve.start("--parallel 2 --ctx 2048")
        local ok, err = pcall(function()
            local body = json.encode({ prompt = "Go", max_tokens = 200, stream = true, ignore_eos = true })
            local signalled = false
            local ex = { port = s.port, send = client.raw("POST", "/v1/completions", body),
                         on_data = function()
                             if not signalled then
                                 signalled = true
                                 s:signal("TERM")
                             end
                         end }
            client.run({ ex }, 30)
            local events = client.sse_events(ex.responses[1].body)
            assert.equal("[DONE]", events[#events])
            assert.equal("length", json.decode(events[#events - 1]).choices[1].finish_reason)
            assert.equal(0, s:wait(10))
            assert.truthy(s:log():find("stopped", 1, true))
        end)
        s:stop()
        assert(ok, err)
    end)

    it("reloads under load without failing a request", function()
        local s = serve.start("--parallel 4 --ctx 2048")
        local ok, err = pcall(function()
            local exs = {}
            for i = 1, 8 do
                local body = { prompt = "Load " .. i, max_tokens = 40, ignore_eos = true, stream = i % 2 == 0 }
                exs[i] = { port = s.port, send = client.raw("POST", "/v1/completions", json.encode(body)) }
            end
            exs[9] = { port = s.port, send = client.raw("POST", "/admin/reload", "") }
            client.run(exs, 60)
            for i = 1, 8 do
                assert.equal(200, exs[i].responses[1].status)
                if i % 2 == 0 then
                    local ev = client.sse_events(exs[i].responses[1].body)
                    assert.equal("[DONE]", ev[#ev])
                else
                    assert.equal(40, json.decode(exs[i].responses[1].body).usage.completion_tokens)
                end
            end
            assert.equal(200, exs[9].responses[1].status)
            -- SIGHUP reloads too.
            s:signal("HUP")
            local reloads
            for _ = 1, 100 do
                reloads = metric(get(s.port, "/metrics").body, 'apr_model_reloads_total{outcome="ok"}')
                if reloads == 2 then break end
                serve.sleep(50)
            end
            assert.equal(2, reloads)
            assert.equal(200, post(s.port, "/v1/completions", { prompt = "after", max_tokens = 3 }).status)
            local log = s:log()
            assert.truthy(log:find("previous model freed", 1, true))
        end)
        s:stop()
        assert(ok, err)
    end)

    -- Issue 16: the loader's open() of a FIFO waited for a writer forever,
    -- so the reload never answered and later ones were "busy".
    it("refuses to reload from a FIFO at once, and keeps serving", function()
        local h = require "tests.lua.helpers"
        local dir = h.tmpdir()
        local fifo = dir .. "/model.gguf"
        assert.equal(0, os.execute("mkfifo " .. fifo))
        local s = serve.start("--parallel 2 --ctx 512")
        local ok, err = pcall(function()
            local r = assert(client.request(s.port, "POST", "/admin/reload", json.encode({ model = fifo }), nil, 10))
            assert.equal(500, r.status, r.body)
            assert.truthy(r.body:find("not a regular file (a FIFO)", 1, true), r.body)
            assert.equal(200, post(s.port, "/v1/completions", { prompt = "still", max_tokens = 2 }).status)
            -- and a reload of the real file is not "busy"
            assert.equal(200, post(s.port, "/admin/reload", "").status)
        end)
        s:stop()
        h.rmtree(dir)
        assert(ok, err)
    end)
end)
