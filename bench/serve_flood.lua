-- serve_flood.lua — `apr serve`'s memory under a flood of requests it must
-- reject: does it give back what they made it allocate?
--
--   apr run bench/serve_flood.lua [--model MODEL.gguf] [--requests 5000] [--concurrency 32]
--                                 [--body-mb 9] [--header-kb 70] [--serve "ARGS"] [--json]
--
-- Starts `apr serve MODEL --port 0 ARGS` (MODEL: the built-in model by
-- default), reads its resident memory (VmRSS in /proc) once it is ready
-- and has answered one request, then sends --requests requests over fresh
-- connections, --concurrency at a time, in equal thirds:
--   * a head with a --header-kb KB header field (431),
--   * a --body-mb MB body declared with Content-Length (413 from the head),
--   * a --body-mb MB chunked body (413 once the server has buffered
--     --max-body of it: the case that makes the server allocate most).
-- Then it waits for the server's connections to close, answers one valid
-- request, and reads VmRSS again. The last lines are a table: memory at
-- the start, the peak (VmHWM), the end, and the growth, which must stay
-- under --limit-mb (50); the exit code is 1 if it does not, or if any
-- request got another answer than its 4xx.
local uv = require "luv"
local json = require "apr.json"
local serve_proc = require "apr.bench.serve_proc"

local opts = { requests = 5000, concurrency = 32, body_mb = 9, header_kb = 70, limit_mb = 50, serve = "",
               settle_s = 3 }
serve_proc.options(arg, opts)
opts.model = opts.model or require("apr.model").default_model_path()

------------------------------------------------------------------ the server

local function rss_of(pid)
    local f = io.open("/proc/" .. pid .. "/status", "r")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)")) / 1024, tonumber(s:match("VmHWM:%s*(%d+)")) / 1024
end

local proc, pid, port = serve_proc.start(opts.model, opts.serve)

------------------------------------------------------------------ clients

-- One exchange on a fresh connection: sends bytes, takes the status line
-- of the answer, then closes (whatever of the request is left unsent).
local function exchange(bytes, on_done)
    local tcp = uv.new_tcp()
    local buf, done = "", false
    local function finish(status)
        if done then return end
        done = true
        if not tcp:is_closing() then tcp:close() end
        on_done(status)
    end
    tcp:connect("127.0.0.1", port, function(err)
        if err then return finish("connect: " .. err) end
        tcp:read_start(function(rerr, data)
            if rerr or not data then return finish(tonumber(buf:match("^HTTP/1%.1 (%d%d%d)")) or "closed") end
            buf = buf .. data
            local status = buf:match("^HTTP/1%.1 (%d%d%d)")
            if status then finish(tonumber(status)) end
        end)
        tcp:write(bytes, function() end)
    end)
end

local function post_json(body)
    return "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " ..
        #body .. "\r\n\r\n" .. body
end

local body_bytes = math.floor(opts.body_mb * 2 ^ 20)
local KINDS = {
    { name = "header", want = 431,
      bytes = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " .. string.rep("h", opts.header_kb * 1024) .. "\r\n\r\n" },
    { name = "body", want = 413,
      bytes = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" ..
              "Content-Length: " .. body_bytes .. "\r\n\r\n" .. string.rep("b", body_bytes) },
    { name = "chunked", want = 413,
      bytes = (function()
          local chunk = string.rep("c", 65536)
          local piece = string.format("%x\r\n%s\r\n", #chunk, chunk)
          return "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" ..
                 "Transfer-Encoding: chunked\r\n\r\n" .. string.rep(piece, math.ceil(body_bytes / #chunk)) .. "0\r\n\r\n"
      end)() },
}

-- Runs n exchanges, c at a time; returns { [kind] = { [status] = count } }.
local function flood(n, c)
    local counts, started, finished = {}, 0, 0
    for _, k in ipairs(KINDS) do counts[k.name] = {} end
    local function next_one()
        if started >= n then return end
        started = started + 1
        local kind = KINDS[(started - 1) % #KINDS + 1]
        exchange(kind.bytes, function(status)
            local s = tostring(status)
            counts[kind.name][s] = (counts[kind.name][s] or 0) + 1
            finished = finished + 1
            if finished == n then return uv.stop() end
            next_one()
        end)
    end
    for _ = 1, math.min(c, n) do next_one() end
    uv.run("default")
    return counts
end

local function sleep(s)
    local t = uv.new_timer()
    t:start(math.floor(s * 1000), 0, function() t:close() uv.stop() end)
    uv.run("default")
end

-- The server's open connections, from its /metrics.
local function metrics()
    local text
    local tcp = uv.new_tcp()
    local buf = ""
    tcp:connect("127.0.0.1", port, function(err)
        if err then return uv.stop() end
        tcp:read_start(function(_, data)
            if not data then
                text = buf
                tcp:close()
                return uv.stop()
            end
            buf = buf .. data
        end)
        tcp:write("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    end)
    uv.run("default")
    return text or ""
end

local function valid_request()
    local status
    exchange(post_json(json.encode({ prompt = "Hello", max_tokens = 4 })), function(s)
        status = s
        uv.stop()
    end)
    uv.run("default")
    return status
end

------------------------------------------------------------------ the run

local first = valid_request()
local rss0 = rss_of(pid)
local t0 = uv.hrtime()
local counts = flood(opts.requests, opts.concurrency)
local seconds = (uv.hrtime() - t0) * 1e-9
-- Rejected connections linger (the server reads and drops what is still
-- coming) for up to its linger time; wait until they are gone.
for _ = 1, 40 do
    local open = tonumber(metrics():match("\napr_http_connections (%d+)"))
    if open and open <= 1 then break end
    sleep(0.25)
end
sleep(opts.settle_s)
local last = valid_request()
local rss1, hwm = rss_of(pid)

local bad = 0
for _, k in ipairs(KINDS) do
    for status, n in pairs(counts[k.name]) do
        if tonumber(status) ~= k.want then bad = bad + n end
    end
end
local growth = rss1 - rss0
local ok = growth <= opts.limit_mb and bad == 0 and first == 200 and last == 200

print(string.format("%d rejected requests (%d KB headers, %g MB bodies: Content-Length and chunked), %d at a time, " ..
    "in %.1f s", opts.requests, opts.header_kb, opts.body_mb, opts.concurrency, seconds))
for _, k in ipairs(KINDS) do
    local parts = {}
    for status, n in pairs(counts[k.name]) do parts[#parts + 1] = status .. ": " .. n end
    table.sort(parts)
    print(string.format("  %-8s want %d, got %s", k.name, k.want, table.concat(parts, ", ")))
end
print(string.format("valid request before: %s, after: %s", tostring(first), tostring(last)))
print("")
print("| server memory | MB |")
print("|---|---|")
print(string.format("| RSS at start (ready, one request answered) | %.1f |", rss0))
print(string.format("| peak RSS (VmHWM) | %.1f |", hwm))
print(string.format("| RSS after the flood | %.1f |", rss1))
print(string.format("| growth (limit %d) | %.1f %s |", opts.limit_mb, growth, growth <= opts.limit_mb and "ok" or "OVER"))
if opts.json then
    print(json.encode({ requests = opts.requests, rss_start_mb = rss0, rss_peak_mb = hwm, rss_end_mb = rss1,
                        growth_mb = growth, unexpected = bad, seconds = seconds }))
end
proc:kill("sigterm")
uv.run("default")
return ok and 0 or 1
