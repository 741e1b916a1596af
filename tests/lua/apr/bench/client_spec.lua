-- client_spec.lua — bench/client.lua: the HTTP response, SSE and NDJSON
-- parsers fed every split of their input, and streamed requests against a
-- loopback server that sends exact bytes with pauses (the times of the
-- pieces, errors, truncation, silence).
local uv = require "luv"
local client = require "apr.bench.client"
local task = require "apr.bench.task"

local function all_splits(text, feed)
    -- Every way of cutting text in two, then byte by byte.
    local outs = {}
    for cut = 0, #text do
        outs[#outs + 1] = feed({ text:sub(1, cut), text:sub(cut + 1) })
    end
    local bytes = {}
    for i = 1, #text do bytes[i] = text:sub(i, i) end
    outs[#outs + 1] = feed(bytes)
    return outs
end

-- A server on loopback that answers each connection with pieces, each
-- sent after its delay (ms); closes after the last unless keep_open.
local function canned_server(pieces, keep_open)
    local srv = uv.new_tcp()
    srv:bind("127.0.0.1", 0)
    local received = {}
    srv:listen(16, function()
        local c = uv.new_tcp()
        srv:accept(c)
        local i, started = 0, false
        local step
        function step()
            i = i + 1
            local p = pieces[i]
            if not p then
                if not keep_open and not c:is_closing() then c:shutdown(function() c:close() end) end
                return
            end
            local t = uv.new_timer()
            t:start(p[1], 0, function()
                t:close()
                if not c:is_closing() then c:write(p[2]) end
                step()
            end)
        end
        -- Answers once the request has come.
        c:read_start(function(_, data)
            if not data then return end
            received[#received + 1] = data
            if not started then started = true step() end
        end)
    end)
    return srv, srv:getsockname().port, received
end

local function stream(port, protocol, timeout)
    return task.run(function()
        return task.await(function(cb)
            client.stream({ host = "127.0.0.1", port = port, protocol = protocol or "openai", timeout = timeout,
                            req = { messages = { { role = "user", content = "hi" } }, max_tokens = 3, model = "m" } }, cb)
        end)
    end)
end

local function sse_chunk(text)
    return string.format("%x\r\n%s\r\n", #text, text)
end
local HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

describe("bench client parsers", function()
    it("parses chunked, sized and close-delimited responses however the bytes are cut", function()
        local chunked = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n" ..
                        "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n"
        for _, r in ipairs(all_splits(chunked, function(parts)
            local body, done, status = {}, false, nil
            local p = client.response_parser({ on_head = function(s, hd) status = s assert(hd["x-a"] == "1") end,
                                               on_body = function(b) body[#body + 1] = b end, on_done = function() done = true end })
            for _, part in ipairs(parts) do p.feed(part) end
            return { table.concat(body), done, status }
        end)) do
            assert.same({ "hello world", true, 200 }, r)
        end
        local sized = "HTTP/1.1 404 Not Found\r\ncontent-length: 7\r\n\r\nmissing"
        for _, r in ipairs(all_splits(sized, function(parts)
            local body = {}
            local p = client.response_parser({ on_body = function(b) body[#body + 1] = b end })
            for _, part in ipairs(parts) do p.feed(part) end
            return { table.concat(body), p.done, p.status }
        end)) do
            assert.same({ "missing", true, 404 }, r)
        end
        local p = client.response_parser({})
        p.feed("HTTP/1.0 200 OK\r\n\r\nto the end")
        assert.is_false(p.done)
        p.finish()
        assert.is_true(p.done)
    end)

    it("rejects what is not HTTP", function()
        for _, bad in ipairs({ "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                               "HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n",
                               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY" }) do
            local p = client.response_parser({})
            assert.has_error(function() p.feed(bad) end)
        end
        local p = client.response_parser({})
        assert.has_error(function() p.feed(string.rep("x", 70000)) end)
    end)

    it("parses Server-Sent Events with any line ends, comments and multi-line data", function()
        local text = ": comment\r\ndata: one\r\n\r\nevent: x\ndata: two\ndata: lines\n\nid: 3\rdata:three\r\rdata: [DONE]\n\ndata: unfinished"
        for _, got in ipairs(all_splits(text, function(parts)
            local events = {}
            local feed = client.sse_parser(function(d) events[#events + 1] = d end)
            for _, part in ipairs(parts) do feed(part) end
            return events
        end)) do
            assert.same({ "one", "two\nlines", "three", "[DONE]" }, got)
        end
    end)

    it("parses newline-delimited JSON, skipping blank lines", function()
        for _, got in ipairs(all_splits('{"a":1}\r\n\n{"b":2}\n{"c"', function(parts)
            local lines = {}
            local feed = client.ndjson_parser(function(l) lines[#lines + 1] = l end)
            for _, part in ipairs(parts) do feed(part) end
            return lines
        end)) do
            assert.same({ '{"a":1}', '{"b":2}' }, got)
        end
    end)

    it("asks llama-server not to reuse cached prompts unless the request says so", function()
        local req = { messages = { { role = "user", content = "hi" } }, max_tokens = 1 }
        local _, body = client.request_body("openai", "chat", req)
        assert.truthy(body:find('"cache_prompt":false', 1, true), body)
        req.cache_prompt = true
        _, body = client.request_body("openai", "chat", req)
        assert.truthy(body:find('"cache_prompt":true', 1, true), body)
    end)

    it("reads URLs as servers are given", function()
        assert.same({ host = "127.0.0.1", port = 8080, base = "" }, client.parse_url("http://127.0.0.1:8080/"))
        assert.same({ host = "gpu-box", port = 80, base = "/llama" }, client.parse_url("http://gpu-box/llama/"))
        assert.is_nil(client.parse_url("https://x"))
        assert.is_nil(client.parse_url("localhost:11434"))
        assert.is_nil(client.parse_url("http://x:99999"))
    end)
end)

describe("bench client streams", function()
    it("times each piece of text as it arrives and reads usage and timings", function()
        local ev = function(t) return sse_chunk("data: " .. t .. "\n\n") end
        local srv, port = canned_server({
            { 0, HEAD },
            { 30, ev('{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}') },
            { 40, ev('{"choices":[{"index":0,"delta":{"content":"a"}}]}') },
            { 50, ev('{"choices":[{"index":0,"delta":{"content":"b"}}]}') .. ev('{"choices":[{"index":0,"delta":{"content":""}}]}') },
            { 50, ev('{"choices":[{"index":0,"delta":{"content":"c"},"finish_reason":"length"}]}') },
            { 0, ev('{"choices":[],"usage":{"completion_tokens":3,"prompt_tokens":9},"timings":{"predicted_per_second":20}}') },
            { 0, ev("[DONE]") .. "0\r\n\r\n" },
        })
        local s = stream(port)
        srv:close()
        assert.is_true(s.ok, s.error)
        assert.equal(3, #s.events)
        assert.equal("abc", table.concat(s.text))
        assert.equal(3, s.usage.completion_tokens)
        assert.equal(20, s.timings.predicted_per_second)
        assert.equal("length", s.finish_reason)
        -- the first event (no text yet) is timed apart from the first text
        local first_event = s.t_first_event - s.t0
        assert.is_true(first_event > 0.025 and first_event < 0.2, "first event " .. first_event)
        local ttft = s.events[1] - s.t0
        assert.is_true(ttft > first_event + 0.03 and ttft < 0.3, "TTFT " .. ttft)
        local gap = s.events[2] - s.events[1]
        assert.is_true(gap > 0.04 and gap < 0.2, "gap " .. gap)
        assert.is_true(s.t_connect <= s.t0)
    end)

    it("reads Ollama's stream and its final object", function()
        local srv, port, received = canned_server({
            { 0, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n" },
            { 0, sse_chunk('{"message":{"role":"assistant","content":"x"},"done":false}\n{"message":{"content":"y"},"done":false}\n') },
            { 0, sse_chunk('{"message":{"content":""},"done":true,"done_reason":"length","eval_count":2,"eval_duration":1000000}\n') },
            { 0, "0\r\n\r\n" },
        })
        local s = stream(port, "ollama")
        srv:close()
        assert.is_true(s.ok, s.error)
        assert.equal(2, #s.events)
        assert.equal(2, s.ollama.eval_count)
        assert.truthy(table.concat(received):find("POST /api/chat HTTP/1.1", 1, true))
        assert.truthy(table.concat(received):find('"num_predict":3', 1, true), table.concat(received))
    end)

    it("fails a request with the server's message, a truncated stream, bad data, silence or no server", function()
        local cases = {
            { { { 0, 'HTTP/1.1 400 Bad Request\r\nContent-Length: 52\r\n\r\n{"error":{"message":"the request exceeds context"}}\n' } },
              "HTTP 400: the request exceeds context" },
            { { { 0, HEAD }, { 0, sse_chunk('data: {"choices":[{"delta":{"content":"a"}}]}\n\n') } },
              "the connection closed mid-response" },
            { { { 0, HEAD }, { 0, sse_chunk("data: {not json\n\n") } }, "bad SSE data" },
            { { { 0, HEAD }, { 0, sse_chunk('data: {"error":{"message":"out of memory"}}\n\n') } }, "out of memory" },
            { { { 0, HEAD }, { 0, sse_chunk('data: {"choices":[{"delta":{"content":"a"}}]}\n\n') .. "0\r\n\r\n" } },
              "without its end marker" },
        }
        for _, c in ipairs(cases) do
            local srv, port = canned_server(c[1])
            local s = stream(port)
            srv:close()
            assert.is_false(s.ok)
            assert.truthy(tostring(s.error):find(c[2], 1, true), tostring(s.error) .. " (wanted: " .. c[2] .. ")")
        end
        local srv, port = canned_server({ { 0, HEAD } }, true)
        local t = uv.hrtime()
        local s = stream(port, "openai", 0.4)
        srv:close()
        assert.is_false(s.ok)
        assert.truthy(s.error:find("no answer for 0.4 s", 1, true), s.error)
        assert.is_true((uv.hrtime() - t) / 1e9 < 3)
        -- A port nobody listens on.
        local probe = uv.new_tcp()
        probe:bind("127.0.0.1", 0)
        local dead = probe:getsockname().port
        probe:close()
        s = stream(dead)
        assert.is_false(s.ok)
        assert.truthy(s.error:find("cannot connect", 1, true), s.error)
    end)
end)
