-- serve_stall.lua — does a long text stall `apr serve`'s event loop?
--
--   apr run bench/serve_stall.lua [--model MODEL.gguf] [--mb 8] [--serve "ARGS"] [--json]
--
-- Starts `apr serve MODEL --port 0 --max-body 16M ARGS` (MODEL: the
-- built-in model by default) and, for each of two requests with --mb MB of
-- text, sends it and meanwhile asks GET /health every 10 ms on another
-- connection, one at a time:
--   * POST /tokenize {"content": TEXT}: tokenized whole (and answered);
--   * POST /v1/completions {"prompt": TEXT}: far over any request's context.
-- The table gives each request's time to its answer and the slowest
-- /health answer while it ran: that is how long every other client waited.
local uv = require "luv"
local json = require "apr.json"
local serve_proc = require "apr.bench.serve_proc"

local opts = { mb = 8, serve = "" }
serve_proc.options(arg, opts)
opts.model = opts.model or require("apr.model").default_model_path()

local function now() return uv.hrtime() * 1e-9 end

local proc, _, port = serve_proc.start(opts.model, "--max-body 16M " .. tostring(opts.serve))

-- One request on a fresh connection; cb(status, seconds) when answered.
-- The answer's bytes are counted, not kept: a 30 MB answer concatenated
-- piece by piece would stall this client, and its /health timings with it.
local function request(bytes, cb)
    local tcp, head, got, t0 = uv.new_tcp(), "", 0, now()
    local status, want
    tcp:connect("127.0.0.1", port, function(err)
        if err then return cb(nil, 0) end
        tcp:read_start(function(_, data)
            if data and not want then
                head = head .. data
                local e = head:find("\r\n\r\n", 1, true)
                if e then
                    status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
                    want = tonumber(head:sub(1, e):lower():match("content%-length: *(%d+)")) or math.huge
                    got = #head - (e + 3)
                end
            elseif data then
                got = got + #data
            end
            if not data or (want and got >= want) then
                tcp:close()
                cb(status, now() - t0)
            end
        end)
        tcp:write(bytes)
    end)
end

local function post(path, body)
    return "POST " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n" ..
        "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

-- Text of distinct words, as a document would be (a repeated phrase would
-- let the tokenizer's cache make it look faster than it is).
local words = {}
for i = 1, 5000 do words[i] = string.format("w%dq%d", (i * 7919) % 10007, i % 97) end
local text = table.concat(words, " ")
text = string.rep(text, math.ceil(opts.mb * 2 ^ 20 / #text)):sub(1, math.floor(opts.mb * 2 ^ 20))

local function measure(path, body)
    local status, seconds, worst, n_health = nil, nil, 0, 0
    request(post(path, body), function(s, t)
        status, seconds = s, t
    end)
    local function health()
        if status then return uv.stop() end
        request("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", function(_, t)
            n_health = n_health + 1
            if t > worst then worst = t end
            local timer = uv.new_timer()
            timer:start(10, 0, function()
                timer:close()
                health()
            end)
        end)
    end
    health()
    uv.run("default")
    return { status = status, seconds = seconds, worst_health = worst, health_checks = n_health }
end

local tok = measure("/tokenize", json.encode({ content = text }))
local cmp = measure("/v1/completions", json.encode({ prompt = text, max_tokens = 1 }))

print(string.format("%.1f MB of text (%d bytes); /health asked every 10 ms while each request ran", opts.mb, #text))
print("")
print("| request | status | its answer after | slowest /health meanwhile | /health answers |")
print("|---|---|---|---|---|")
print(string.format("| POST /tokenize | %s | %.3f s | %.1f ms | %d |", tostring(tok.status), tok.seconds,
    tok.worst_health * 1000, tok.health_checks))
print(string.format("| POST /v1/completions (over the context) | %s | %.3f s | %.1f ms | %d |", tostring(cmp.status),
    cmp.seconds, cmp.worst_health * 1000, cmp.health_checks))
if opts.json then print(json.encode({ tokenize = tok, completions = cmp, bytes = #text })) end
proc:kill("sigterm")
uv.run("default")
