-- serve_security_spec.lua — `apr serve` against a hostile web page and a
-- curious client: the admin routes are off without an admin key, reloads
-- load only from --models-dir, answers never quote files or name paths,
-- Host and Origin are checked, POST bodies must be JSON, and a reload stuck
-- on its file does not keep SIGTERM from ending the server on time.
local json = require "apr.json"
local h = require "tests.lua.helpers"
local client = require "tests.lua.apr.server.client"
local serve = require "tests.lua.apr.server.serve_helper"

local function request(port, method, path, body, headers)
    local text = body
    if type(body) == "table" then text = json.encode(body) end
    local r = assert(client.request(port, method, path, text, headers, 30))
    r.json = json.decode(r.body) or {}
    r.code = r.json.error and r.json.error.code
    return r
end

local function write(path, bytes)
    local f = assert(io.open(path, "wb"))
    f:write(bytes)
    f:close()
end

local ADMIN = { Authorization = "Bearer sk-admin" }

describe("apr serve without an admin key", function()
    local s
    setup(function() s = serve.start("--api-key sk-user") end)
    teardown(function() if s then s:stop() end end)

    it("keeps /admin/reload off, whatever the request carries", function()
        for _, headers in ipairs({ {}, { Authorization = "Bearer sk-user" } }) do
            local r = request(s.port, "POST", "/admin/reload", {}, headers)
            assert.equal(403, r.status)
            assert.equal("admin_disabled", r.code)
        end
        local _, loads = s:log():gsub("loading model", "")
        assert.equal(1, loads)  -- the first load only: nothing was reloaded
    end)

    it("rejects a rebinding page's Host and a cross-origin page's Origin", function()
        local key = { Authorization = "Bearer sk-user" }
        local r = request(s.port, "GET", "/v1/models", nil, { Authorization = key.Authorization, Host = "evil.example" })
        assert.equal(403, r.status)
        assert.equal("host_not_allowed", r.code)
        r = request(s.port, "POST", "/v1/completions", { prompt = "x", max_tokens = 1 },
            { Authorization = key.Authorization, Origin = "https://evil.example" })
        assert.equal(403, r.status)
        assert.equal("origin_not_allowed", r.code)
        -- What a <form> or fetch(..., {mode: "no-cors"}) posts: text/plain.
        r = request(s.port, "POST", "/v1/completions", '{"prompt": "x", "max_tokens": 1}',
            { Authorization = key.Authorization, ["Content-Type"] = "text/plain" })
        assert.equal(415, r.status)
        r = request(s.port, "POST", "/v1/completions", { prompt = "x", max_tokens = 1 }, key)
        assert.equal(200, r.status)
    end)

    it("answers GET http://127.0.0.1/health (absolute form) like /health: no key needed", function()
        local r = request(s.port, "GET", "http://127.0.0.1/health")
        assert.equal(200, r.status)
        assert.equal("ok", r.json.status)
    end)

    it("says 'the model's chat template' in a template error, not the file's path", function()
        local r = request(s.port, "POST", "/v1/chat/completions",
            { messages = { { role = "user", content = "hi" }, { role = "assistant", content = json.null } } },
            { Authorization = "Bearer sk-user" })
        assert.equal(400, r.status)
        assert.truthy(r.json.error.message:find("the model's chat template", 1, true))
        assert.falsy(r.body:find("gguf", 1, true))
        assert.falsy(r.body:find("fixtures", 1, true))
    end)
end)

describe("apr serve --admin", function()
    it("puts the admin routes behind --api-key, and needs one", function()
        local s = serve.start("--api-key sk-user --admin")
        local ok, err = pcall(function()
            assert.equal(401, request(s.port, "POST", "/admin/reload", {}).status)
            assert.equal(200, request(s.port, "POST", "/admin/reload", {}, { Authorization = "Bearer sk-user" }).status)
        end)
        s:stop()
        assert(ok, err)
        local r = h.apr("serve " .. serve.MODEL .. " --admin --port 0")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("--admin", 1, true))
    end)
end)

describe("apr serve --admin-key --models-dir", function()
    local s, dir, outside
    setup(function()
        dir, outside = h.tmpdir(), h.tmpdir()
        -- dir/held.gguf: a file whose open() is held for 60 s (hold_open.c),
        -- longer than anything here waits.
        local env = assert(serve.hold_open(dir))
        assert(os.execute(string.format("cp %s %s/a.gguf && cp %s %s/b.gguf && cp %s %s/held.gguf && " ..
            "cp %s %s/secret.gguf && mkfifo %s/pipe.gguf && mkdir %s/sub",
            serve.MODEL, dir, serve.MODEL, dir, serve.MODEL, dir, serve.MODEL, outside, dir, dir)) == 0)
        -- A file that is no model, whose first bytes a careless error would quote.
        write(dir .. "/passwd.gguf", "root:x:0:0:root:/root:/bin/bash\n")
        -- A link inside that leads out.
        assert(os.execute(string.format("ln -s %s/secret.gguf %s/link.gguf", outside, dir)) == 0)
        s = serve.start("--admin-key sk-admin --models-dir " .. dir .. " --shutdown-timeout 1", dir .. "/a.gguf",
            nil, env)
    end)
    teardown(function()
        if s then s:stop() end
        h.rmtree(dir)
        h.rmtree(outside)
    end)

    it("reloads a file of the models directory by name", function()
        local r = request(s.port, "POST", "/admin/reload", { model = "b.gguf" }, ADMIN)
        assert.equal(200, r.status)
        assert.equal("b", r.json.model)
        assert.equal("b", request(s.port, "GET", "/v1/models").json.data[1].id)
        r = request(s.port, "POST", "/admin/reload", { model = dir .. "/a.gguf" }, ADMIN)
        assert.equal(200, r.status)
        assert.equal("a", r.json.model)
    end)

    it("refuses paths outside it: .., absolute ones, links that lead out; says nothing of them", function()
        for _, name in ipairs({ "../" .. outside:match("[^/]+$") .. "/secret.gguf", "sub/../a.gguf", "/etc/passwd",
                                outside .. "/secret.gguf", "link.gguf", "/etc/no-such-file" }) do
            local r = request(s.port, "POST", "/admin/reload", { model = name }, ADMIN)
            assert.equal(403, r.status, name)
            assert.equal("reload_path_not_allowed", r.code, name)
            assert.falsy(r.body:find("root:", 1, true), name)
            assert.falsy(r.body:find(outside, 1, true), name)
            assert.falsy(r.body:find(dir, 1, true), name)
        end
        local r = request(s.port, "POST", "/admin/reload", { model = "missing.gguf" }, ADMIN)
        assert.equal(404, r.status)
        r = request(s.port, "POST", "/admin/reload", { model = "pipe.gguf" }, ADMIN)
        assert.equal(400, r.status)  -- a named pipe is never opened
        r = request(s.port, "POST", "/admin/reload", { model = "sub" }, ADMIN)
        assert.equal(400, r.status)
        assert.equal("a", request(s.port, "GET", "/v1/models").json.data[1].id)  -- still serving
    end)

    it("logs a failed load's message, and answers without the file's bytes or path", function()
        local r = request(s.port, "POST", "/admin/reload", { model = "passwd.gguf" }, ADMIN)
        assert.equal(500, r.status)
        assert.equal("model_load_failed", r.code)
        assert.falsy(r.body:find("root", 1, true))
        assert.falsy(r.body:find("passwd", 1, true))
        assert.falsy(r.body:find(dir, 1, true))
        assert.truthy(s:log():find("cannot load model path=" .. dir .. "/passwd.gguf", 1, true))
    end)

    it("needs the admin key, and JSON: a cross-origin form post cannot reload", function()
        assert.equal(401, request(s.port, "POST", "/admin/reload", { model = "b.gguf" }).status)
        local r = request(s.port, "POST", "/admin/reload", '{"model": "b.gguf"}',
            { Authorization = ADMIN.Authorization, ["Content-Type"] = "text/plain", Origin = "https://evil.example" })
        assert.equal(403, r.status)
        r = request(s.port, "POST", "/admin/reload", '{"model": "b.gguf"}',
            { Authorization = ADMIN.Authorization, ["Content-Type"] = "application/x-www-form-urlencoded" })
        assert.equal(415, r.status)
        assert.equal("a", request(s.port, "GET", "/v1/models").json.data[1].id)
    end)

    -- Last: it ends the server.
    it("ends on SIGTERM within its shutdown timeout while a reload is stuck on its file", function()
        local ex = { port = s.port, send = client.raw("POST", "/admin/reload", json.encode({ model = "held.gguf" }),
            ADMIN), keep_open = true }
        client.run({ ex }, 1)  -- the answer never comes: the load is held
        assert.truthy(s:log():find("loading model path=" .. dir .. "/held.gguf", 1, true))
        assert.equal(200, request(s.port, "GET", "/health").status)  -- the current model serves meanwhile
        local t0 = os.time()
        s:signal("TERM")
        local code = s:wait(6)
        assert.equal(0, code)
        assert.is_true(os.time() - t0 <= 5)
        assert.truthy(s:log():find("model load given up", 1, true))
    end)
end)

describe("apr serve with its first load stuck", function()
    it("still ends on SIGTERM within its shutdown timeout", function()
        local dir = h.tmpdir()
        local env = assert(serve.hold_open(dir))
        assert(os.execute(string.format("cp %s %s/held.gguf", serve.MODEL, dir)) == 0)
        local s = serve.start("--shutdown-timeout 1", dir .. "/held.gguf", "loading model", env)
        s:signal("TERM")
        local code = s:wait(6)
        s:stop()
        h.rmtree(dir)
        assert.equal(0, code)
    end)
end)
