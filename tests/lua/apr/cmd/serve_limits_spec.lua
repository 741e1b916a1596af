-- serve_limits_spec.lua — `apr serve`'s resources under abuse: idle
-- connections lose their slot after the header timeout, one address cannot
-- take every slot, rejected requests give their memory back, a prompt too
-- long to fit is refused by its length before it is tokenized, and a long
-- text is tokenized off the event loop, so other clients are answered
-- meanwhile.
local json = require "apr.json"
local client = require "tests.lua.apr.server.client"
local serve = require "tests.lua.apr.server.serve_helper"

local function post(port, path, body, headers)
    local r = assert(client.request(port, "POST", path, type(body) == "string" and body or json.encode(body), headers, 60))
    r.json = json.decode(r.body) or {}
    return r
end

describe("apr serve's connection limits", function()
    local s
    setup(function()
        s = serve.start("--max-connections 24 --max-connections-per-client 16 --header-timeout 2 --idle-timeout 60")
    end)
    teardown(function() if s then s:stop() end end)

    it("closes connections that send nothing after the header timeout, not the idle timeout", function()
        local idle = {}
        for i = 1, 16 do idle[i] = { port = s.port, send = "", keep_open = true } end
        local t0 = os.time()
        client.run(idle, 10)
        for _, ex in ipairs(idle) do
            assert.is_true(ex.closed, "an idle connection still open after 10 s")
            assert.is_nil(ex.responses[1])  -- closed without an answer: it asked nothing
        end
        assert.is_true(os.time() - t0 <= 6)  -- 2 s, not the 60 s idle timeout
        local r = assert(client.request(s.port, "GET", "/health"))
        assert.equal(200, r.status)
    end)

    it("gives one address at most its share of connections (429), and others still get in", function()
        local exs = {}
        for i = 1, 16 do exs[i] = { port = s.port, send = "", keep_open = true } end
        -- After the 16 hold their slots: one more from the same address, and
        -- one from another (127.0.0.2 is loopback too).
        local extra = { port = s.port, send = client.raw("GET", "/health"), start_after = 200 }
        local other = { port = s.port, send = client.raw("GET", "/health"), start_after = 200, bind = "127.0.0.2" }
        exs[17], exs[18] = extra, other
        client.run(exs, 10)
        -- Of the 17 from 127.0.0.1 the one accepted last gets the 429: the
        -- extra one, unless the server took it before an idle one.
        local refused = {}
        for i = 1, 17 do
            local r = exs[i].responses[1]
            if r and r.status == 429 then
                refused[#refused + 1] = i
                assert.is_not_nil(r.headers["retry-after"])
            end
        end
        assert.equal(1, #refused, s:log())
        if refused[1] ~= 17 then assert.equal(200, extra.responses[1] and extra.responses[1].status) end
        assert.equal(200, other.responses[1] and other.responses[1].status)
    end)
end)

describe("apr serve's memory under rejected requests", function()
    it("answers 300 rejected large requests with their 4xx and gives the memory back", function()
        -- bench/serve_flood.lua, a tenth of its acceptance run: 70 KB heads
        -- (431), 9 MB bodies by Content-Length (413) and chunked (413 once
        -- 8 MB are buffered), 32 at a time; then the server's RSS must be
        -- within 30 MB of where it started (the run's last lines say).
        local h = require "tests.lua.helpers"
        local r = h.apr("run bench/serve_flood.lua --model " .. serve.MODEL ..
            " --requests 300 --concurrency 32 --settle-s 1 --limit-mb 30")
        assert.equal(0, r.code, r.out .. r.err)
        assert.truthy(r.out:find("chunked  want 413, got 413: 100", 1, true), r.out)
    end)
end)

describe("apr serve's prompts", function()
    local s
    setup(function() s = serve.start("--parallel 2 --ctx 512 --max-body 12M") end)
    teardown(function() if s then s:stop() end end)

    it("refuses a prompt too long to fit by its length, before tokenizing it, naming the prompt", function()
        local r = post(s.port, "/v1/completions", { prompt = string.rep("word ", 2 * 2 ^ 20), max_tokens = 1 })
        assert.equal(400, r.status)
        assert.equal("context_length_exceeded", r.json.error.code)
        assert.equal("prompt", r.json.error.param)
        assert.truthy(r.json.error.message:find("bytes", 1, true))  -- judged by its length: never tokenized
        r = post(s.port, "/v1/chat/completions", { messages = { { role = "user", content = string.rep("w", 2 ^ 20) } } })
        assert.equal(400, r.status)
        assert.equal("messages", r.json.error.param)
    end)

    it("names the prompt, not max_tokens, when a prompt that was tokenized leaves no room", function()
        local r = post(s.port, "/v1/completions", { prompt = string.rep("a b ", 300) })
        assert.equal(400, r.status)
        assert.equal("context_length_exceeded", r.json.error.code)
        assert.equal("prompt", r.json.error.param)
        r = post(s.port, "/v1/chat/completions", { messages = { { role = "user", content = string.rep("a b ", 300) } } })
        assert.equal(400, r.status)
        assert.equal("messages", r.json.error.param)
    end)

    it("tokenizes a long text off the event loop: /health is answered before /tokenize is", function()
        -- 6 MB of text; the order of the two answers is the test, not a time.
        local words = {}
        for i = 1, 1000 do words[i] = string.format("w%dx%d", i * 7919 % 1000, i) end
        local text = table.concat(words, " ")
        text = string.rep(text, math.ceil(6 * 2 ^ 20 / #text))
        local order = {}
        local big = { port = s.port, send = client.raw("POST", "/tokenize", json.encode({ content = text })) }
        -- /health goes once the big request is all written (and so being
        -- read, parsed and tokenized).
        local health = { port = s.port, send = client.raw("GET", "/health"), after = { big, 20 } }
        big.on_data = function() if order[#order] ~= "tokenize" then order[#order + 1] = "tokenize" end end
        health.on_data = function() order[#order + 1] = "health" end
        client.run({ big, health }, 60)
        assert.equal(200, health.responses[1] and health.responses[1].status)
        assert.equal(200, big.responses[1] and big.responses[1].status)
        assert.equal("health", order[1])
        assert.is_true(#json.decode(big.responses[1].body).tokens > 2 ^ 20)
    end)
end)
