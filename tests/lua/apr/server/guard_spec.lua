-- guard_spec.lua — the checks before routing: Host (DNS rebinding), Origin
-- (cross-site pages), Content-Type of POST bodies, and absolute-form
-- request targets (RFC 9112 3.2.2), on a server in this process.
local uv = require "luv"
local json = require "apr.json"
local http = require "apr.server.http"
local router = require "apr.server.router"
local guard = require "apr.server.guard"
local client = require "tests.lua.apr.server.client"

local function code_of(r)
    local body = json.decode(r.body)
    return body and body.error and body.error.code
end

describe("guard", function()
    it("reads the host of Host headers and origins", function()
        assert.equal("localhost", guard.host_of("LocalHost:8080"))
        assert.equal("::1", guard.host_of("[::1]:8080"))
        assert.equal("example.com", guard.host_of("example.com."))
        assert.equal("10.0.0.2", guard.host_of("10.0.0.2"))
        assert.is_nil(guard.host_of("evil.com:80x"))
        assert.is_nil(guard.host_of("a b"))
        assert.is_nil(guard.host_of(""))
        assert.is_nil(guard.host_of(nil))
    end)

    it("allows the bound address, loopback forms and configured names, and nothing else", function()
        local g = guard.new({ bound = "10.1.2.3", names = { "api.example" } })
        for _, h in ipairs({ "10.1.2.3", "localhost", "app.localhost", "127.0.0.1", "127.9.9.9", "::1",
                             "api.example" }) do
            assert.is_true(g:host_allowed(h), h)
        end
        for _, h in ipairs({ "evil.example", "10.1.2.4", "api.example.evil", "0.0.0.0" }) do
            assert.is_false(g:host_allowed(h), h)
        end
        assert.is_false(g:host_allowed(nil))
        assert.is_true(guard.new({ bound = "127.0.0.1", names = { "*" } }):host_allowed("anything.example"))
    end)

    describe("in front of a router", function()
        local srv, hits
        before_each(function()
            hits = 0
            local app = router.new({ guard = guard.new({ bound = "127.0.0.1", names = { "api.example" } }) })
            app:get("/health", function(req, res) res:json(200, { status = "ok" }) end)
            app:post("/act", function(req, res)
                hits = hits + 1
                res:json(200, { acted = true })
            end)
            srv = assert(http.listen({ port = 0, handler = app:handler(), error_body = router.error_body }))
        end)
        after_each(function()
            srv:close()
            uv.run("nowait")
        end)

        local function request(method, target, body, headers)
            return assert(client.request(srv.port, method, target, body, headers))
        end

        it("rejects a Host that is not this server's (DNS rebinding) before any handler runs", function()
            local r = request("POST", "/act", "{}", { Host = "evil.example:8080" })
            assert.equal(403, r.status)
            assert.equal("host_not_allowed", code_of(r))
            assert.equal(0, hits)
            assert.equal(200, request("GET", "/health", nil, { Host = "127.0.0.1:9" }).status)
            assert.equal(200, request("GET", "/health", nil, { Host = "api.example" }).status)
            assert.equal(200, request("POST", "/act", "{}", { Host = "localhost:1234" }).status)
            assert.equal(1, hits)
        end)

        it("rejects a cross-origin request, even a simple one, before any handler runs", function()
            local r = request("POST", "/act", "{}", { Origin = "https://evil.example" })
            assert.equal(403, r.status)
            assert.equal("origin_not_allowed", code_of(r))
            r = request("POST", "/act", "{}", { Origin = "null" })
            assert.equal(403, r.status)
            assert.equal(0, hits)
            assert.equal(200, request("POST", "/act", "{}", { Origin = "http://localhost:3000" }).status)
            assert.is_nil(r.headers["access-control-allow-origin"])
        end)

        it("answers 415 to a POST that is not application/json (a form or text/plain post)", function()
            for _, ctype in ipairs({ "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                     "application/json; charset=latin1", "application/jsonp" }) do
                local r = request("POST", "/act", "{}", { ["Content-Type"] = ctype })
                assert.equal(415, r.status, ctype)
                assert.equal("unsupported_media_type", code_of(r))
            end
            local r = request("POST", "/act", "{}", { ["Content-Type"] = false })
            assert.equal(415, r.status)
            r = request("POST", "/act", nil, {})  -- no body, no type: a bodiless fetch() is a simple request too
            assert.equal(415, r.status)
            assert.equal(0, hits)
            assert.equal(200, request("POST", "/act", "{}", { ["Content-Type"] = "Application/JSON; charset=UTF-8" }).status)
            assert.equal(1, hits)
        end)

        it("takes the host of an absolute-form target instead of the Host header", function()
            local r = request("GET", "http://127.0.0.1/health", nil, { Host = "evil.example" })
            assert.equal(200, r.status)
            r = request("GET", "http://evil.example/health", nil, { Host = "127.0.0.1" })
            assert.equal(403, r.status)
            r = request("GET", "HTTP://localhost:8080?x=1", nil)
            assert.equal(404, r.status)  -- the path "/", which has no route here
            r = request("GET", "ftp://127.0.0.1/health", nil)
            assert.equal(400, r.status)
            r = request("GET", "http://user@127.0.0.1/health", nil)
            assert.equal(400, r.status)
        end)
    end)
end)

describe("router with an API key", function()
    it("treats an absolute-form /health as /health: public, no 401", function()
        local app = router.new({ api_key = "sk-test" })
        app:get("/health", function(req, res) res:json(200, { status = "ok" }) end)
        local srv = assert(http.listen({ port = 0, handler = app:handler(), error_body = router.error_body }))
        local r = assert(client.request(srv.port, "GET", "http://127.0.0.1/health"))
        srv:close()
        uv.run("nowait")
        assert.equal(200, r.status)
    end)

    it("keeps the admin routes off without an admin key, and behind that key with one", function()
        local function serve(opts)
            local app = router.new(opts)
            app:post("/admin/reload", function(req, res) res:json(200, { status = "reloaded" }) end)
            return assert(http.listen({ port = 0, handler = app:handler(), error_body = router.error_body }))
        end
        local off = serve({ api_key = "sk-test" })
        local r = assert(client.request(off.port, "POST", "/admin/reload", "{}", { Authorization = "Bearer sk-test" }))
        assert.equal(403, r.status)
        assert.equal("admin_disabled", code_of(r))
        off:close()
        local on = serve({ api_key = "sk-test", admin_key = "sk-admin" })
        r = assert(client.request(on.port, "POST", "/admin/reload", "{}", { Authorization = "Bearer sk-test" }))
        assert.equal(401, r.status)
        r = assert(client.request(on.port, "POST", "/admin/reload", "{}"))
        assert.equal(401, r.status)
        r = assert(client.request(on.port, "POST", "/admin/reload", "{}", { Authorization = "Bearer sk-admin" }))
        assert.equal(200, r.status)
        on:close()
        uv.run("nowait")
    end)
end)
