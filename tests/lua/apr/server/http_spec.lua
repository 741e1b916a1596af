-- http_spec.lua — the HTTP/1.1 server on luv, in this process, with routes
-- that need no model: framing, keep-alive, pipelining, timeouts, limits,
-- half-closed sockets, streaming and disconnects.
local uv = require "luv"
local http = require "apr.server.http"
local router = require "apr.server.router"
local client = require "tests.lua.apr.server.client"

local function start(opts)
    local app = router.new()
    local state = { closed_streams = 0 }
    app:get("/hello", function(req, res) res:send(200, "hello", { ["Content-Type"] = "text/plain" }) end)
    app:post("/echo", function(req, res) res:send(200, req.body) end)
    app:get("/boom", function() error("kaboom") end)
    app:get("/stream", function(req, res)
        res:on_close(function() state.closed_streams = state.closed_streams + 1 end)
        local n, timer = 0, uv.new_timer()
        http.await(function(done)
            timer:start(5, 5, function()
                n = n + 1
                local alive = res:sse({ n = n })
                if not alive or n >= (tonumber(req.query:match("n=(%d+)")) or 3) then
                    timer:stop()
                    timer:close()
                    done()
                end
            end)
        end)
        if not res.closed then
            res:sse("[DONE]")
            res:finish()
        end
    end)
    app:get("/slow", function(req, res)
        local t = uv.new_timer()
        http.await(function(done) t:start(200, 0, function() t:close() done() end) end)
        res:send(200, "slow")
    end)
    local o = { port = 0, handler = app:handler(), error_body = router.error_body }
    for k, v in pairs(opts or {}) do o[k] = v end
    local srv = assert(http.listen(o))
    state.srv = srv
    return srv, state
end

describe("http server", function()
    local srv, state
    before_each(function() srv, state = start({ header_timeout = 0.3, idle_timeout = 0.5, linger = 0.2 }) end)
    after_each(function()
        srv:close()
        uv.run("nowait")
    end)

    it("answers requests and keeps the connection alive", function()
        local ex = { port = srv.port, expect = 2,
                     send = client.raw("GET", "/hello") .. client.raw("POST", "/echo", "abc") }
        client.run({ ex })
        assert.equal(2, #ex.responses)
        assert.equal(200, ex.responses[1].status)
        assert.equal("hello", ex.responses[1].body)
        assert.equal("keep-alive", ex.responses[1].headers.connection)
        assert.equal("abc", ex.responses[2].body)
    end)

    it("answers pipelined requests in order, one at a time", function()
        local ex = { port = srv.port, expect = 3,
                     send = client.raw("GET", "/slow") .. client.raw("GET", "/hello") .. client.raw("POST", "/echo", "z") }
        client.run({ ex })
        assert.equal(3, #ex.responses)
        assert.same({ "slow", "hello", "z" }, { ex.responses[1].body, ex.responses[2].body, ex.responses[3].body })
    end)

    it("reads chunked bodies and answers Expect: 100-continue", function()
        local head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        local ex = { port = srv.port, delay = 30, send = { head, "3\r\nabc\r\n", "2\r\nde\r\n0\r\n\r\n" } }
        client.run({ ex })
        local r = ex.responses[1]
        assert.equal(100, r.interim)
        assert.equal(200, r.status)
        assert.equal("abcde", r.body)
    end)

    it("answers HEAD without a body", function()
        local ex = { port = srv.port, send = client.raw("HEAD", "/hello"), head_only = true }
        client.run({ ex })
        assert.equal(200, ex.responses[1].status)
        assert.equal("5", ex.responses[1].headers["content-length"])
    end)

    it("rejects malformed requests with an OpenAI error and closes", function()
        local cases = {
            { "GET / HTTP/1.1\nHost: x\n\n", 400 },
            { "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
            { "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
            { "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505 },
            { "GET / HTTP/1.1\r\nHost: x\r\nX: " .. string.rep("a", 20000) .. "\r\n\r\n", 431 },
            { "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413 },
        }
        local exs = {}
        for i, c in ipairs(cases) do exs[i] = { port = srv.port, send = c[1], keep_open = true } end
        client.run(exs)
        for i, c in ipairs(cases) do
            local r = exs[i].responses[1]
            assert.is_not_nil(r, "no answer to case " .. i)
            assert.equal(c[2], r.status)
            assert.equal("close", r.headers.connection)
            assert.truthy(r.body:find('"error"', 1, true))
            assert.is_true(exs[i].closed)
        end
    end)

    it("ends a slow head with 408 (slowloris) and closes idle connections", function()
        local t0 = uv.hrtime()
        local slow = { port = srv.port, delay = 100, send = { "GET /hello HTTP/1.1\r\n", "Host: x\r\n", "X: 1\r\n",
                                                             "X: 2\r\n", "X: 3\r\n", "X: 4\r\n", "X: 5\r\n\r\n" } }
        local idle = { port = srv.port, send = client.raw("GET", "/hello"), expect = 2, keep_open = true }
        client.run({ slow, idle }, 5)
        assert.equal(408, slow.responses[1].status)
        local elapsed = (slow.t_done - t0) * 1e-9
        assert.is_true(elapsed < 1.5, "took " .. elapsed)
        -- The idle keep-alive connection got its answer, then was closed.
        assert.equal(1, #idle.responses)
        assert.is_true(idle.closed)
        assert.is_falsy(idle.timed_out)
    end)

    it("answers a client that half-closed its socket", function()
        local ex = { port = srv.port, send = client.raw("POST", "/echo", "half"), shutdown = true, keep_open = true }
        client.run({ ex }, 5)
        assert.equal("half", ex.responses[1].body)
        assert.is_true(ex.closed)
    end)

    it("streams server-sent events and notices a client that leaves", function()
        local ex = { port = srv.port, send = client.raw("GET", "/stream?n=4") }
        client.run({ ex })
        local events = client.sse_events(ex.responses[1].body)
        assert.same({ '{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}', "[DONE]" }, events)
        assert.equal("text/event-stream", ex.responses[1].headers["content-type"])

        local gone = { port = srv.port, send = client.raw("GET", "/stream?n=1000"), close_after_bytes = 200 }
        client.run({ gone })
        client.run_until(function() return state.closed_streams == 1 end, 2)
        assert.equal(1, state.closed_streams)
    end)

    it("turns a handler error into a 500 that keeps the message to the log, and stays up", function()
        local r = assert(client.request(srv.port, "GET", "/boom"))
        assert.equal(500, r.status)
        -- The message names the handler's file (and could quote others).
        assert.falsy(r.body:find("kaboom", 1, true))
        assert.falsy(r.body:find("http_spec.lua", 1, true))
        assert.truthy(r.body:find("handler_failed", 1, true))
        assert.equal(200, assert(client.request(srv.port, "GET", "/hello")).status)
    end)

    it("drains: answers in progress finish, then it stops", function()
        local drained = false
        local ex = { port = srv.port, send = client.raw("GET", "/slow") }
        local t = uv.new_timer()
        t:start(50, 0, function()
            t:close()
            srv:drain(function() drained = true end)
        end)
        client.run({ ex })
        assert.equal("slow", ex.responses[1].body)
        assert.equal("close", ex.responses[1].headers.connection)
        local late = { port = srv.port, send = client.raw("GET", "/hello") }
        client.run({ late }, 2)
        assert.is_nil(late.responses[1])
        assert.is_true(drained)
    end)
end)

describe("http server limits", function()
    it("answers 503 past max_connections", function()
        local srv = start({ max_connections = 2 })
        local a = { port = srv.port, send = client.raw("GET", "/slow") }
        local b = { port = srv.port, send = client.raw("GET", "/slow") }
        local c = { port = srv.port, send = "" }
        client.run({ a, b, c })
        assert.equal(200, a.responses[1].status)
        assert.equal(200, b.responses[1].status)
        assert.equal(503, c.responses[1].status)
        assert.is_not_nil(c.responses[1].headers["retry-after"])
        srv:close()
        uv.run("nowait")
    end)

    it("answers 413 when a chunked body outgrows max_body", function()
        local srv = start({ max_body = 10 })
        local ex = { port = srv.port, send = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
                                            "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n" }
        client.run({ ex })
        assert.equal(413, ex.responses[1].status)
        srv:close()
        uv.run("nowait")
    end)
end)
