-- router_spec.lua — routes, the API key and OpenAI's error format.
local uv = require "luv"
local json = require "apr.json"
local http = require "apr.server.http"
local router = require "apr.server.router"
local client = require "tests.lua.apr.server.client"

local function error_of(r)
    local body = assert(json.decode(r.body))
    return body.error
end

describe("router", function()
    local srv, app
    before_each(function()
        app = router.new({ api_key = "sk-test" })
        app:get("/health", function(req, res) res:json(200, { status = "ok" }) end)
        app:post("/v1/things/:id", function(req, res)
            local body = req.json
            if type(body.n) ~= "number" then router.fail(400, "'n' must be a number", "n") end
            local out = json.object()
            out.id = req.params.id
            out.n = body.n
            out.keys = json.keys(body)
            res:json(200, out)
        end)
        app:get("/v1/x", function(req, res) res:json({ first = true }) end)
        app:get("/v1/x", function(req, res) res:json({ second = true }) end)  -- overrides
        app:get("/fail", function() error("script broke") end)
        srv = assert(http.listen({ port = 0, handler = app:handler(), error_body = router.error_body }))
    end)
    after_each(function()
        srv:close()
        uv.run("nowait")
    end)

    local auth = { Authorization = "Bearer sk-test" }

    it("needs the API key everywhere but /health", function()
        assert.equal(200, client.request(srv.port, "GET", "/health").status)
        local r = client.request(srv.port, "GET", "/v1/x")
        assert.equal(401, r.status)
        assert.equal("invalid_api_key", error_of(r).code)
        r = client.request(srv.port, "GET", "/v1/x", nil, { Authorization = "Bearer wrong" })
        assert.equal(401, r.status)
        assert.equal("Incorrect API key provided.", error_of(r).message)
        r = client.request(srv.port, "GET", "/nowhere")
        assert.equal(401, r.status)  -- no key, no hint of which paths exist
    end)

    it("routes with params, later routes override earlier ones", function()
        local r = client.request(srv.port, "POST", "/v1/things/42", '{"z": 1, "n": 2, "a": 3}', auth)
        assert.equal(200, r.status)
        assert.equal("application/json", r.headers["content-type"])
        -- Key order survives decoding (tool arguments depend on it).
        assert.equal('{"id":"42","n":2,"keys":["z","n","a"]}', r.body)
        assert.equal('{"second":true}', client.request(srv.port, "GET", "/v1/x", nil, auth).body)
    end)

    it("answers each error with its status and an OpenAI error object", function()
        local cases = {
            { "GET", "/nope", nil, 404, "unknown_url" },
            { "DELETE", "/v1/x", nil, 405, "method_not_allowed" },
            { "POST", "/v1/things/1", "{bad json", 400, nil },
            { "POST", "/v1/things/1", "\"\xff\xfe\"", 400, nil },
            { "POST", "/v1/things/1", "", 400, nil },
            { "POST", "/v1/things/1", '{"n": "x"}', 400, nil, "n" },
            { "GET", "/fail", nil, 500, "handler_failed" },
        }
        for _, c in ipairs(cases) do
            local r = client.request(srv.port, c[1], c[2], c[3], auth)
            assert.equal(c[4], r.status, c[1] .. " " .. c[2] .. " " .. tostring(c[3]))
            local e = error_of(r)
            assert.is_string(e.message)
            assert.is_string(e.type)
            assert.equal(c[5] or json.null, e.code)
            assert.equal(c[6] or json.null, e.param)
            if c[4] == 405 then assert.equal("GET, HEAD", r.headers.allow) end
            if c[4] == 500 then
                -- The handler's message stays in the log: it names files.
                assert.falsy(e.message:find("script broke", 1, true))
                assert.falsy(e.message:find("router_spec", 1, true))
            end
        end
        local bad = client.request(srv.port, "POST", "/v1/things/1", "\"\xff\"", auth)
        assert.truthy(error_of(bad).message:find("UTF-8", 1, true))
    end)
end)
