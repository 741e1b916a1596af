-- serve_hostile_spec.lua — 1,000 requests, 20% of them malformed or
-- hostile (bad JSON, invalid UTF-8, huge headers, slowloris, half-closed
-- sockets, oversized bodies, negative or huge max_tokens, smuggling shapes,
-- junk bytes), sent in concurrent waves: the server must not crash, and
-- every valid request must get the right answer.
local json = require "apr.json"
local client = require "tests.lua.apr.server.client"
local serve = require "tests.lua.apr.server.serve_helper"

local N, WAVE = 1000, 100

local function completion(prompt, extra)
    local body = { prompt = prompt, max_tokens = 2, temperature = 0 }
    for k, v in pairs(extra or {}) do body[k] = v end
    return json.encode(body)
end

-- Each hostile kind: the bytes to send, how, and what answer is right.
local HOSTILE = {
    { name = "bad json", send = client.raw("POST", "/v1/completions", '{"prompt": "x", max_tokens: }'), status = 400 },
    { name = "invalid utf-8", send = client.raw("POST", "/v1/completions", '{"prompt": "\xc3\x28\xff"}'), status = 400 },
    { name = "huge headers", send = "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("b", 40000) .. "\r\n\r\n",
      status = 431 },
    { name = "slowloris", send = { "POST /v1/completions HTTP/1.1\r\n", "Host: x\r\n", "X-A: 1\r\n", "X-B: 2\r\n",
                                   "X-C: 3\r\n", "X-D: 4\r\n", "X-E: 5\r\n", "X-F: 6\r\n" }, delay = 150, status = 408 },
    { name = "half-closed mid-head", send = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le", shutdown = true,
      status = false },
    { name = "oversized body", send = client.raw("POST", "/v1/completions", string.rep("x", 40000)), status = 413 },
    { name = "negative max_tokens", send = client.raw("POST", "/v1/completions", completion("x", { max_tokens = -5 })),
      status = 400 },
    { name = "huge max_tokens", send = client.raw("POST", "/v1/completions", completion("x", { max_tokens = 2 ^ 31 - 1 })),
      status = 400 },
    { name = "smuggling", send = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n" ..
                                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status = 400 },
    { name = "junk bytes", send = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" .. string.rep("\0", 64), status = 400 },
}

describe("apr serve under hostile input", function()
    local s
    setup(function()
        s = serve.start("--parallel 8 --ctx 2048 --queue 1000 --max-body 16K --header-timeout 0.5 --max-connections 2000")
    end)
    teardown(function() if s then s:stop() end end)

    it("survives 1,000 requests with 20% malformed and answers every valid one correctly", function()
        math.randomseed(20261126)
        -- The right answers: greedy completions of 10 prompts, asked alone.
        local expected = {}
        for p = 0, 9 do
            local r = assert(client.request(s.port, "POST", "/v1/completions", completion("Prompt " .. p)))
            assert.equal(200, r.status)
            expected[p] = json.decode(r.body).choices[1].text
        end
        local plan = {}
        for i = 1, N do
            if i % 5 == 0 then
                plan[i] = { hostile = HOSTILE[(i / 5 - 1) % #HOSTILE + 1] }
            else
                plan[i] = { prompt = i % 10, half_close = i % 37 == 0 }
            end
        end
        -- Shuffle, so hostile and valid requests share every wave.
        for i = N, 2, -1 do
            local j = math.random(i)
            plan[i], plan[j] = plan[j], plan[i]
        end
        local valid_ok, hostile_ok, failures = 0, 0, {}
        for w = 1, N, WAVE do
            local exs = {}
            for i = w, math.min(w + WAVE - 1, N) do
                local p = plan[i]
                local ex
                if p.hostile then
                    local h = p.hostile
                    -- Answers the server closes after are waited out to the close;
                    -- a 400 from a route leaves a keep-alive connection open.
                    ex = { port = s.port, send = h.send, delay = h.delay, shutdown = h.shutdown,
                           keep_open = h.status == false }
                else
                    ex = { port = s.port, send = client.raw("POST", "/v1/completions", completion("Prompt " .. p.prompt)),
                           shutdown = p.half_close }
                end
                ex.plan = p
                exs[#exs + 1] = ex
            end
            client.run(exs, 60)
            for _, ex in ipairs(exs) do
                local p, r = ex.plan, ex.responses[1]
                if p.hostile then
                    local h = p.hostile
                    local good
                    if h.status == false then
                        good = ex.closed and (r == nil or r.status == 400)
                    else
                        good = r ~= nil and r.status == h.status and r.body:find('"error"', 1, true) ~= nil
                    end
                    if good then hostile_ok = hostile_ok + 1
                    else failures[#failures + 1] = h.name .. ": " .. tostring(r and r.status_line or ex.error or "no answer") end
                else
                    local text = r and r.status == 200 and json.decode(r.body).choices[1].text
                    if text == expected[p.prompt] then valid_ok = valid_ok + 1
                    else failures[#failures + 1] = "valid " .. p.prompt .. ": " .. tostring(r and r.body or ex.error) end
                end
            end
        end
        assert.same({}, failures)
        assert.equal(800, valid_ok)
        assert.equal(200, hostile_ok)
        local health = assert(client.request(s.port, "GET", "/health"))
        assert.equal(200, health.status)
        assert.is_nil(s:wait(0.05))  -- still running
    end)
end)
