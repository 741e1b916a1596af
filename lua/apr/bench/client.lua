-- bench/client.lua — the one HTTP client every benchmarked system is
-- measured through: streaming chat requests over HTTP/1.1 on luv, with each
-- piece of text timed the moment its bytes arrive.
--
-- Written on luv rather than libcurl because the timing must come from the
-- same event loop that runs the concurrent streams and the GPU sampler:
-- libcurl's multi interface would deliver its data through C callbacks into
-- Lua, which apr's FFI rules out (STYLE.md, rule 11), or through a thread
-- whose hand-off would add its own latency to every token. The HTTP this
-- needs is small: one request per connection, responses framed by
-- Content-Length, chunked encoding or the connection's end.
--
-- Two stream formats, one set of timing points:
--   "openai"  POST /v1/chat/completions, Server-Sent Events of
--             chat.completion.chunk objects (apr serve, llama-server, vLLM);
--   "ollama"  POST /api/chat, newline-delimited JSON (Ollama's own API),
--             whose last object carries Ollama's timing fields.
-- In both, t0 is when the request's last byte was handed to the socket
-- (connecting is timed apart), a token event is a piece of non-empty
-- content, and t_end is when the response ended.
local uv = require "luv"
local json = require "apr.json"

local M = {}

-- Request bodies as clients send them: no spaces after , and :.
local COMPACT = { separators = { ",", ":" } }

local function now() return uv.hrtime() * 1e-9 end
M.now = now

------------------------------------------------------------------ parsing

-- An incremental HTTP/1.1 response parser. feed(data) takes bytes as they
-- come; handlers: on_head(status, headers), on_body(piece), on_done().
-- finish() at the connection's end completes a body framed by it. Raises
-- on malformed input (the caller turns that into the request's error).
function M.response_parser(h)
    local p = { buf = "", state = "head", done = false }
    local function body(piece)
        if #piece > 0 and h.on_body then h.on_body(piece) end
    end
    local function complete()
        p.state, p.done = "done", true
        if h.on_done then h.on_done() end
    end
    function p.feed(data)
        p.buf = p.buf .. data
        while true do
            if p.state == "head" then
                local e = p.buf:find("\r\n\r\n", 1, true)
                if not e then
                    if #p.buf > 65536 then error("response head larger than 64 KiB") end
                    return
                end
                local head = p.buf:sub(1, e - 1)
                p.buf = p.buf:sub(e + 4)
                local status = tonumber(head:match("^HTTP/1%.[01] (%d%d%d)"))
                if not status then error("not an HTTP response: " .. head:sub(1, 40):gsub("[%c]", "?")) end
                local headers = {}
                for line in head:gmatch("\r\n([^\r\n]*)") do
                    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
                    if k then
                        k = k:lower()
                        headers[k] = headers[k] and (headers[k] .. ", " .. v) or v
                    end
                end
                if status >= 100 and status < 200 then
                    -- An interim response (100 Continue): the real one follows.
                else
                    p.status, p.headers = status, headers
                    if h.on_head then h.on_head(status, headers) end
                    local te = (headers["transfer-encoding"] or ""):lower()
                    if te:find("chunked", 1, true) then
                        p.state = "chunk_size"
                    elseif headers["content-length"] then
                        p.left = tonumber(headers["content-length"])
                        if not p.left or p.left < 0 then error("bad Content-Length") end
                        p.state = "length"
                        if p.left == 0 then return complete() end
                    elseif status == 204 or status == 304 or h.head_only then
                        return complete()
                    else
                        p.state = "until_close"
                    end
                end
            elseif p.state == "length" then
                if #p.buf == 0 then return end
                local piece = p.buf:sub(1, p.left)
                p.buf = p.buf:sub(#piece + 1)
                p.left = p.left - #piece
                body(piece)
                if p.left == 0 then return complete() end
            elseif p.state == "until_close" then
                body(p.buf)
                p.buf = ""
                return
            elseif p.state == "chunk_size" then
                local lf = p.buf:find("\r\n", 1, true)
                if not lf then
                    if #p.buf > 1024 then error("chunk size line too long") end
                    return
                end
                local size = tonumber(p.buf:sub(1, lf - 1):match("^%s*(%x+)"), 16)
                if not size then error("bad chunk size") end
                p.buf = p.buf:sub(lf + 2)
                if size == 0 then
                    p.state = "trailer"
                else
                    p.left, p.state = size, "chunk_data"
                end
            elseif p.state == "chunk_data" then
                if #p.buf == 0 then return end
                local piece = p.buf:sub(1, p.left)
                p.buf = p.buf:sub(#piece + 1)
                p.left = p.left - #piece
                body(piece)
                if p.left == 0 then p.state = "chunk_end" end
            elseif p.state == "chunk_end" then
                if #p.buf < 2 then return end
                if p.buf:sub(1, 2) ~= "\r\n" then error("chunk not followed by CRLF") end
                p.buf = p.buf:sub(3)
                p.state = "chunk_size"
            elseif p.state == "trailer" then
                local lf = p.buf:find("\r\n", 1, true)
                if not lf then return end
                local line = p.buf:sub(1, lf - 1)
                p.buf = p.buf:sub(lf + 2)
                if line == "" then return complete() end
            else
                return
            end
        end
    end
    function p.finish()
        if p.state == "until_close" then return complete() end
    end
    return p
end

-- Server-Sent Events: feed(text) calls on_event(data) for each event's
-- data (its data: lines joined by newlines). Lines end in LF, CRLF or CR;
-- comments (":...") and other fields are skipped.
function M.sse_parser(on_event)
    local buf, data = "", nil
    return function(text)
        buf = buf .. text
        while true do
            local i = buf:find("[\r\n]")
            if not i then return end
            local skip = 1
            if buf:sub(i, i) == "\r" then
                if i == #buf then return end  -- perhaps half of a CRLF
                if buf:sub(i + 1, i + 1) == "\n" then skip = 2 end
            end
            local line = buf:sub(1, i - 1)
            buf = buf:sub(i + skip)
            if line == "" then
                if data then on_event(data) end
                data = nil
            elseif line:sub(1, 1) ~= ":" then
                local field, value = line:match("^([^:]*):? ?(.*)$")
                if field == "data" then data = data and (data .. "\n" .. value) or value end
            end
        end
    end
end

-- Newline-delimited JSON: feed(text) calls on_line(line) per non-empty line.
function M.ndjson_parser(on_line)
    local buf = ""
    return function(text)
        buf = buf .. text
        while true do
            local lf = buf:find("\n", 1, true)
            if not lf then return end
            local line = buf:sub(1, lf - 1):gsub("\r$", "")
            buf = buf:sub(lf + 1)
            if line:find("%S") then on_line(line) end
        end
    end
end

------------------------------------------------------------------ URLs

-- parse_url("http://host:port/base") -> { host, port, base } or nil, why.
function M.parse_url(url)
    local host, port, base = tostring(url):match("^http://([^/:]+):?(%d*)(.*)$")
    if not host then
        if tostring(url):match("^https://") then return nil, "https is not supported (use http:// on loopback or a LAN)" end
        return nil, "not an http:// URL: " .. tostring(url)
    end
    port = port ~= "" and tonumber(port) or 80
    if port < 1 or port > 65535 then return nil, "bad port in " .. url end
    base = base:gsub("/+$", "")
    return { host = host, port = port, base = base }
end

local resolved = {}
local function resolve(host)
    if host:match("^[%d.]+$") or host:find(":") then return host end
    if resolved[host] then return resolved[host] end
    local res = uv.getaddrinfo(host, nil, { socktype = "stream", family = "inet" })
    if not res or not res[1] then return nil, "cannot resolve host '" .. host .. "'" end
    resolved[host] = res[1].addr
    return res[1].addr
end

------------------------------------------------------------------ connections

-- A connection sends requests one after another (keep-alive) and reads
-- each answer with a fresh parser. connect(host, port, cb) -> cb(conn) or
-- cb(nil, why); conn:send(opts, cb) (see request); conn:close().
local Conn = {}
Conn.__index = Conn

function M.connect(host, port, cb)
    local addr, rerr = resolve(host)
    local tcp = uv.new_tcp()
    local conn = setmetatable({ host = host, port = port, tcp = tcp }, Conn)
    local function fail(why)
        -- Through the loop, so cb never runs before connect returns.
        if not tcp:is_closing() then tcp:close() end
        local t = uv.new_timer()
        t:start(0, 0, function() t:close() cb(nil, why) end)
    end
    if not addr then return fail(rerr) end
    tcp:nodelay(true)
    local ok, cerr = pcall(tcp.connect, tcp, addr, port, function(err)
        if err then
            if not tcp:is_closing() then tcp:close() end
            return cb(nil, string.format("cannot connect to %s:%d: %s", host, port, tostring(err)))
        end
        conn.t_connect = now()
        tcp:read_start(function(e, data) conn:on_read(e, data) end)
        cb(conn)
    end)
    if not ok then fail(string.format("cannot connect to %s:%d: %s", host, port, tostring(cerr))) end
end

function Conn:on_read(err, data)
    local cur = self.current
    if err or not data then
        self.eof = true
        if not self.tcp:is_closing() then self.tcp:close() end
        if not cur then return end
        cur.r.t_end = cur.r.t_end or now()
        if err then return cur.finish("read: " .. tostring(err)) end
        local ok, perr = pcall(cur.parser.finish)
        if not ok then return cur.finish(tostring(perr)) end
        if cur.parser.done then return cur.finish() end
        return cur.finish(cur.r.status and "the connection closed mid-response"
            or "the connection closed without a response")
    end
    if not cur then return end  -- bytes nobody asked for: dropped
    local t = now()
    cur.last_progress = t
    cur.r.t_first_byte = cur.r.t_first_byte or t
    cur.r.t_last_read = t
    local ok, perr = pcall(cur.parser.feed, data)
    if not ok then return cur.finish("bad response: " .. tostring(perr):gsub("^.-:%d+: ", "")) end
    if cur.parser.done then
        cur.r.t_end = t
        cur.finish()
    end
end

function Conn:close()
    if not self.tcp:is_closing() then self.tcp:close() end
end

-- conn:send(opts, cb): one request on this connection (see M.request for
-- opts and the record cb gets). The connection stays open after it unless
-- the server closes it or opts.close.
function Conn:send(opts, cb)
    assert(not self.current, "conn:send while a request is in flight")
    local r = { t_connect = self.t_connect }
    local cur = { r = r, last_progress = now() }
    local body_parts = {}
    local timer = uv.new_timer()
    local file_fd
    local finished = false
    function cur.finish(err)
        if finished then return end
        finished = true
        self.current = nil
        r.error = r.error or err
        r.t_end = r.t_end or now()
        if not opts.on_body then r.body = table.concat(body_parts) end
        if not timer:is_closing() then timer:close() end
        if file_fd then uv.fs_close(file_fd) file_fd = nil end
        if err or opts.close then self:close() end
        cb(r)
    end
    self.current = cur
    if self.eof or self.tcp:is_closing() then
        local t = uv.new_timer()
        t:start(0, 0, function() t:close() cur.finish("the connection is closed") end)
        return
    end
    local timeout = opts.timeout or 120
    timer:start(250, 250, function()
        if now() - cur.last_progress > timeout then cur.finish(string.format("no answer for %g s", timeout)) end
    end)
    cur.parser = M.response_parser({
        head_only = opts.head_only or opts.method == "HEAD",
        on_head = function(status, headers)
            r.status, r.headers = status, headers
            if opts.on_head then opts.on_head(status, headers, r.t_last_read) end
        end,
        on_body = function(piece)
            if opts.on_body then opts.on_body(piece, r.t_last_read) else body_parts[#body_parts + 1] = piece end
        end,
    })
    local head = { (opts.method or "GET") .. " " .. (opts.path or "/") .. " HTTP/1.1",
                   "Host: " .. self.host .. ":" .. self.port, "User-Agent: apr-bench", "Accept: */*" }
    if opts.close then head[#head + 1] = "Connection: close" end
    for k, v in pairs(opts.headers or {}) do head[#head + 1] = k .. ": " .. v end
    local body_size = opts.body and #opts.body or opts.body_size
    if body_size then head[#head + 1] = "Content-Length: " .. body_size end
    local head_bytes = table.concat(head, "\r\n") .. "\r\n\r\n"
    local tcp = self.tcp

    if not opts.body_file then
        tcp:write(head_bytes .. (opts.body or ""), function(werr)
            if werr then cur.finish("write: " .. tostring(werr)) end
        end)
        r.t0 = now()
        return
    end
    -- Streams body_file in 1 MiB pieces, each written before the next is
    -- read, so a 20 GB upload never sits in memory.
    local fd, ferr = uv.fs_open(opts.body_file, "r", 0)
    if not fd then return cur.finish("cannot read " .. opts.body_file .. ": " .. tostring(ferr)) end
    file_fd = fd
    local sent, total = 0, opts.body_size
    local function next_piece()
        if finished then return end
        if sent >= total then
            r.t0 = now()
            uv.fs_close(fd)
            file_fd = nil
            return
        end
        local data, e = uv.fs_read(fd, math.min(2 ^ 20, total - sent), sent)
        if not data or #data == 0 then
            return cur.finish("read " .. opts.body_file .. ": " .. tostring(e or "unexpected end"))
        end
        sent = sent + #data
        tcp:write(data, function(werr)
            if werr then return cur.finish("write: " .. tostring(werr)) end
            cur.last_progress = now()
            if opts.on_progress then opts.on_progress(sent, total) end
            next_piece()
        end)
    end
    tcp:write(head_bytes)
    next_piece()
end

------------------------------------------------------------------ requests

-- request(opts, cb): one HTTP request on a connection of its own.
--   opts: host, port, method ("GET"), path, body (string) or body_file
--         (streamed from disk, opts.on_progress(sent, total)), headers
--         ({ name = value }), timeout (seconds without progress: 120),
--         on_head(status, headers, t), on_body(piece, t), head_only.
--   cb(r): r.status, r.headers, r.body (unless on_body took it), r.error,
--          r.t_connect (connected), r.t0 (request sent), r.t_first_byte,
--          r.t_end.
-- Every path ends in exactly one call of cb.
function M.request(opts, cb)
    local t_start = now()
    M.connect(opts.host, opts.port, function(conn, err)
        if not conn then return cb({ error = err, t_start = t_start, t_end = now() }) end
        local o = {}
        for k, v in pairs(opts) do o[k] = v end
        o.close = true
        conn:send(o, function(r)
            r.t_start = t_start
            cb(r)
        end)
    end)
end

-- JSON in, JSON out: cb(value, r) where value is the decoded body of a 2xx
-- answer, or nil and r.error says why (with the server's message).
function M.json_request(opts, cb)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    if opts.json ~= nil then
        o.body = json.encode(opts.json, COMPACT)
        o.headers = o.headers or {}
        o.headers["Content-Type"] = "application/json"
    end
    M.request(o, function(r)
        if r.error then return cb(nil, r) end
        local value = r.body and r.body ~= "" and json.decode(r.body) or nil
        if r.status < 200 or r.status > 299 then
            local msg = value and type(value) == "table" and (value.error and (type(value.error) == "table"
                and value.error.message or value.error)) or (r.body or ""):sub(1, 200)
            r.error = string.format("HTTP %d from %s %s: %s", r.status, o.method or "GET", o.path, tostring(msg))
            return cb(nil, r)
        end
        cb(value, r)
    end)
end

------------------------------------------------------------------ streamed chat

-- The request for protocol and api ("chat": the server applies the chat
-- template to req.messages; "completions": req.prompt is the text already
-- under the template, sent as it is): path and body. req: messages or
-- prompt, max_tokens, seed, model, cache_prompt (true lets llama-server
-- reuse a cached prompt prefix), and Ollama's options (merged in).
function M.request_body(protocol, api, req)
    if protocol == "ollama" then
        local options = { num_predict = req.max_tokens, temperature = 0, seed = req.seed }
        for k, v in pairs(req.options or {}) do options[k] = v end
        if api == "completions" then
            return "/api/generate", json.encode({ model = req.model, prompt = req.prompt, raw = true, stream = true,
                                                  options = options, keep_alive = req.keep_alive }, COMPACT)
        end
        return "/api/chat", json.encode({ model = req.model, messages = req.messages, stream = true,
                                          options = options, keep_alive = req.keep_alive }, COMPACT)
    end
    -- ignore_eos: every system generates max_tokens (where it can: Ollama
    -- has no such option); cache_prompt false: llama-server would otherwise
    -- reuse the KV of a prompt seen in an earlier run, which apr does not.
    -- req.cache_prompt asks for it (a benchmark of prefix caching itself).
    local body = {
        model = req.model, max_tokens = req.max_tokens, temperature = 0, seed = req.seed, stream = true,
        stream_options = { include_usage = true }, ignore_eos = true, cache_prompt = req.cache_prompt == true,
    }
    if api == "completions" then
        body.prompt = req.prompt
        return "/v1/completions", json.encode(body, COMPACT)
    end
    body.messages = req.messages
    return "/v1/chat/completions", json.encode(body, COMPACT)
end

-- Reads one parsed event of either protocol into the record s.
local function take_event(s, protocol, payload, t)
    if protocol == "openai" then
        if payload == "[DONE]" then s.done = true return end
        s.t_first_event = s.t_first_event or t
        local ev, err = json.decode(payload)
        if type(ev) ~= "table" then error("bad SSE data: " .. tostring(err)) end
        if ev.error then error("server error: " .. json.encode(ev.error)) end
        local c = ev.choices and ev.choices[1]
        local piece = c and (c.delta and c.delta.content or c.text)
        if type(piece) == "string" and piece ~= "" then
            s.events[#s.events + 1] = t
            s.text[#s.text + 1] = piece
        end
        if c and c.finish_reason and c.finish_reason ~= json.null then s.finish_reason = c.finish_reason end
        if type(ev.usage) == "table" then s.usage = ev.usage end
        if type(ev.timings) == "table" then s.timings = ev.timings end
    else
        s.t_first_event = s.t_first_event or t
        local ev, err = json.decode(payload)
        if type(ev) ~= "table" then error("bad NDJSON line: " .. tostring(err)) end
        if ev.error then error("server error: " .. tostring(ev.error)) end
        local piece = ev.message and ev.message.content or ev.response
        if type(piece) == "string" and piece ~= "" then
            s.events[#s.events + 1] = t
            s.text[#s.text + 1] = piece
        end
        if ev.done == true then
            s.done = true
            s.finish_reason = ev.done_reason
            s.ollama = ev
        end
    end
end

-- stream(opts, cb): one streamed request. opts: host, port, base (path
-- prefix), protocol ("openai" | "ollama"), api ("chat" | "completions"),
-- req (see request_body),
-- headers, timeout; conn: send it on this open connection (keep-alive)
-- instead of a new one. cb(s) with s.ok, s.error, s.status, s.t_connect, s.t0,
-- s.events (arrival times of the pieces of text), s.t_first_event (of the
-- stream's first event, text or not: a server sends it with the first
-- token, even one that is no text yet), s.t_end, s.text (the
-- pieces), s.usage (OpenAI), s.timings (llama-server), s.ollama (Ollama's
-- final object), s.finish_reason.
function M.stream(opts, cb)
    local protocol = opts.protocol or "openai"
    local path, body = M.request_body(protocol, opts.api or "chat", opts.req)
    local s = { events = {}, text = {}, protocol = protocol }
    local feed
    local function on_payload(payload)
        take_event(s, protocol, payload, s.t_piece)
    end
    feed = protocol == "ollama" and M.ndjson_parser(on_payload) or M.sse_parser(on_payload)
    local failed
    local headers = { ["Content-Type"] = "application/json" }
    for k, v in pairs(opts.headers or {}) do headers[k] = v end
    local send = opts.conn and function(o, f) opts.conn:send(o, f) end or M.request
    send({
        host = opts.host, port = opts.port, method = "POST", path = (opts.base or "") .. path, body = body,
        headers = headers, timeout = opts.timeout,
        on_body = function(piece, t)
            if failed then return end
            s.body_head = s.body_head or piece:sub(1, 300)
            if s.status and s.status ~= 200 then
                s.error_body = (s.error_body or "") .. piece
                return
            end
            s.t_piece = t
            local ok, err = pcall(feed, piece)
            if not ok then failed = tostring(err):gsub("^.-:%d+: ", "") end
        end,
        on_head = function(status) s.status = status end,
    }, function(r)
        s.t_connect, s.t0, s.t_first_byte, s.t_end = r.t_connect, r.t0, r.t_first_byte, r.t_end
        s.error = failed or r.error
        if not s.error and s.status ~= 200 then
            local v = s.error_body and json.decode(s.error_body)
            local msg = type(v) == "table" and v.error and (type(v.error) == "table" and v.error.message or v.error)
            s.error = string.format("HTTP %s: %s", tostring(s.status), tostring(msg or (s.error_body or ""):sub(1, 200)))
        end
        if not s.error and not s.done then s.error = "the stream ended without its end marker" end
        s.ok = s.error == nil
        cb(s)
    end)
end

return M
