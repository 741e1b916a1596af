-- server/http.lua — an HTTP/1.1 server on luv (libuv).
--
-- The bytes of each connection go through the C parser
-- (runtime/server/http_parser.c) one request at a time; each request's
-- handler runs in its own coroutine, so it may wait (for tokens from the
-- engine, say) without blocking the loop. Responses are whole bodies with
-- Content-Length, or streams sent chunked (SSE uses those).
--
-- What a hostile or careless client cannot do here:
--   * hold a connection forever: a request's head must arrive within
--     header_timeout, its body within body_timeout, an idle keep-alive
--     connection is closed after idle_timeout, and a client that stops
--     reading its response is dropped after write_timeout;
--   * make the server buffer without bound: reading stops while a request is
--     being answered and the next one is already buffered, or while the
--     answer is queued faster than the client takes it (write_high_water);
--     a stream whose client falls write_limit bytes behind is dropped;
--   * open connections without bound: past max_connections a new one gets a
--     503 and is closed, past max_connections_per_client from one address a
--     429; a connection that sends nothing is closed after header_timeout;
--   * keep memory: a connection's parser (and its buffer) is freed the
--     moment the connection is done with, and the parser gives back what a
--     large request made its buffer grow to.
-- A client that half-closes (shuts down its sending side) still gets its
-- answers; a streaming response whose client goes away is aborted, and the
-- handler hears of it through res:on_close.
local uv = require "luv"
local await = require "apr.await"
local core = require "apr.core"
local json = require "apr.json"

local ffi, C = core.ffi, core.C

local M = {}

local NEED_MORE, HEAD, REQUEST, ERROR =
    tonumber(C.APR_HTTP_NEED_MORE), tonumber(C.APR_HTTP_HEAD), tonumber(C.APR_HTTP_REQUEST), tonumber(C.APR_HTTP_ERROR)

M.reasons = {
    [100] = "Continue", [200] = "OK", [201] = "Created", [204] = "No Content",
    [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
    [413] = "Content Too Large", [414] = "URI Too Long", [417] = "Expectation Failed",
    [422] = "Unprocessable Content", [429] = "Too Many Requests",
    [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
    [501] = "Not Implemented", [503] = "Service Unavailable", [505] = "HTTP Version Not Supported",
}

M.defaults = {
    host = "127.0.0.1",
    port = 8080,
    backlog = 511,
    max_connections = 1024,
    max_connections_per_client = 0,  -- open connections one client address may hold (0: no cap)
    max_head = 16384,        -- bytes of request line + headers
    max_headers = 64,
    max_body = 8 * 2 ^ 20,   -- bytes
    header_timeout = 10,     -- seconds for a request's head to arrive
    body_timeout = 60,       -- seconds for its body
    idle_timeout = 60,       -- seconds a keep-alive connection may sit idle
    write_timeout = 60,      -- seconds a queued answer may make no progress
    write_high_water = 2 ^ 20,   -- bytes queued before reading pauses
    write_limit = 64 * 2 ^ 20,   -- bytes a stream may fall behind before it is dropped
    read_ahead = 65536,      -- bytes of a next request buffered while answering one
    linger = 2,              -- seconds to drain input before closing after an error
}

local SERVER_HEADER = "apr"
-- Responses go out without the spaces json.dumps puts after , and :.
local COMPACT = { separators = { ",", ":" } }

local function now() return uv.now() / 1000 end

------------------------------------------------------------------ responses

local Response = {}
Response.__index = Response

local function format_head(res, status, headers, framing)
    local lines = { string.format("HTTP/1.1 %d %s\r\n", status, M.reasons[status] or "Unknown") }
    local n = 1
    local function add(k, v)
        n = n + 1
        lines[n] = k .. ": " .. tostring(v) .. "\r\n"
    end
    add("Server", SERVER_HEADER)
    for _, h in ipairs(res.headers) do add(h[1], h[2]) end
    if headers then
        for k, v in pairs(headers) do add(k, v) end
    end
    for k, v in pairs(framing) do add(k, v) end
    add("Connection", res.conn:will_close(res) and "close" or "keep-alive")
    lines[n + 1] = "\r\n"
    return table.concat(lines)
end

-- res:header(name, value): a header for the answer (before it starts).
function Response:header(name, value)
    assert(not self.started, "the response has already started")
    assert(not tostring(value):find("[\r\n%z]"), "header value with a line break")
    self.headers[#self.headers + 1] = { name, value }
    return self
end

-- res:send(status, body [, headers]): the whole answer at once.
function Response:send(status, body, headers)
    assert(not self.started, "the response has already started")
    body = body or ""
    self.started, self.status = true, status
    local head = format_head(self, status, headers, { ["Content-Length"] = #body })
    self.bytes = #body
    if self.req.method == "HEAD" then body = "" end
    self.conn:write({ head, body })
    self:_done()
    return true
end

-- res:start(status [, headers]): begins a streamed answer; res:write sends
-- its pieces and res:finish ends it. HTTP/1.0 clients get the bytes as they
-- are, ended by closing the connection.
function Response:start(status, headers)
    assert(not self.started, "the response has already started")
    self.started, self.status, self.streaming = true, status, true
    if self.req.version < 11 then self.conn.close_after = true end
    local framing = self.req.version >= 11 and { ["Transfer-Encoding"] = "chunked" } or {}
    self.conn:write(format_head(self, status, headers, framing))
    return not self.closed
end

-- res:write(data) -> false once the client is gone (the stream should stop).
function Response:write(data)
    assert(self.streaming and not self.finished, "write outside a started stream")
    if self.closed then return false end
    if #data == 0 or self.req.method == "HEAD" then return true end
    self.bytes = self.bytes + #data
    if self.req.version >= 11 then
        self.conn:write({ string.format("%x\r\n", #data), data, "\r\n" })
    else
        self.conn:write(data)
    end
    return not self.closed
end

function Response:finish()
    if self.finished then return end
    if self.streaming and not self.closed and self.req.version >= 11 and self.req.method ~= "HEAD" then
        self.conn:write("0\r\n\r\n")
    end
    self:_done()
end

-- res:json([status,] value): value encoded as JSON (apr.json: ordered
-- objects keep their key order), or a string already encoded.
function Response:json(status, value)
    if value == nil and type(status) ~= "number" then status, value = 200, status end
    local body = type(value) == "string" and value or assert(json.encode(value, COMPACT))
    return self:send(status, body, { ["Content-Type"] = "application/json" })
end

-- res:error(status, message [, param, code, type]): the server's error
-- object (OpenAI's, when the router set it up).
function Response:error(status, message, param, code, etype)
    local body, ctype = self.conn.server.error_body(status, message, param, code, etype)
    if status == 503 or status == 429 then
        local has = false
        for _, h in ipairs(self.headers) do has = has or h[1]:lower() == "retry-after" end
        if not has then self:header("Retry-After", self.conn.server.opts.retry_after or 1) end
    end
    return self:send(status, body, { ["Content-Type"] = ctype })
end

-- res:sse(value): one server-sent event, `data: JSON\n\n` (value a table) or
-- `data: TEXT\n\n` (a string: "[DONE]"). The first call starts the stream.
-- Returns false once the client is gone.
function Response:sse(value)
    if not self.started then
        self:start(200, { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache" })
    end
    local text = type(value) == "string" and value or assert(json.encode(value, COMPACT))
    if text:find("[\r\n]") then
        -- Each line of a multi-line payload is its own data: field.
        text = text:gsub("\r\n", "\n"):gsub("\r", "\n"):gsub("\n", "\ndata: ")
    end
    return self:write("data: " .. text .. "\n\n")
end

-- res:on_close(fn): fn() runs if the client goes away before the answer is
-- finished (to cancel work done for it).
function Response:on_close(fn)
    self.close_handlers[#self.close_handlers + 1] = fn
end

-- Bytes of this connection's answers not yet taken by the client.
function Response:backlog()
    return self.conn:queued()
end

function Response:_done()
    if self.finished then return end
    self.finished = true
    self.t_finish = uv.hrtime()
    self.conn:response_done(self)
end

function Response:_abort()
    if self.closed then return end
    self.closed = true
    if self.finished then return end
    for _, fn in ipairs(self.close_handlers) do
        local ok, err = pcall(fn)
        if not ok then self.conn.server:log("error", "on_close handler failed: " .. tostring(err)) end
    end
end

------------------------------------------------------------------ handlers

-- Each handler runs in a coroutine so it can wait for tokens without
-- blocking the loop. Whoever wakes a waiting handler resumes it through
-- M.resume, so an error after a wait is answered like one before it.
local handler_res = setmetatable({}, { __mode = "k" })  -- coroutine -> its response

function M.resume(co, ...)
    local ok, err = coroutine.resume(co, ...)
    if not ok then
        local res = handler_res[co]
        if res then
            res.conn:handler_failed(res, err, co)
        else
            io.stderr:write("apr server: ", tostring(err), "\n", debug.traceback(co), "\n")
        end
    end
end

-- await(subscribe) suspends the calling handler until subscribe's callback
-- is called, and returns that callback's arguments (apr/await.lua).
function M.await(subscribe) return await(subscribe, M.resume, "a handler coroutine") end

------------------------------------------------------------------ connections

local Conn = {}
Conn.__index = Conn

local req_box = ffi.new("apr_http_request[1]")

function Conn:queued()
    if self.tcp:is_closing() then return 0 end
    return self.tcp:get_write_queue_size()
end

function Conn:will_close(res)
    return self.close_after or not res.req.keep_alive or self.server.draining
end

function Conn:write(data)
    if self.closed then return end
    self.last_progress = now()
    local ok, err = self.tcp:write(data, function(werr)
        if werr then
            self:abort("write: " .. tostring(werr))
            return
        end
        self.last_progress = now()
        self:update_reading()
    end)
    if not ok then
        self:abort("write: " .. tostring(err))
        return
    end
    local queued = self:queued()
    if self.res and self.res.streaming and queued > self.server.opts.write_limit then
        self:abort("client fell more than " .. self.server.opts.write_limit .. " bytes behind")
        return
    end
    self:update_reading()
end

-- Reading continues while answering (so a client that goes away is noticed)
-- unless the next request is already buffered or answers pile up unread.
function Conn:update_reading()
    if self.closed or self.lingering then return end
    local o = self.server.opts
    local want = not self.peer_eof and self:queued() <= o.write_high_water and
        (not self.res or tonumber(C.apr_http_parser_buffered(self.parser)) < o.read_ahead)
    if want and not self.reading then
        self.reading = true
        self.tcp:read_start(function(err, data) self:on_read(err, data) end)
    elseif not want and self.reading then
        self.reading = false
        self.tcp:read_stop()
    end
end

function Conn:on_read(err, data)
    if err then return self:abort("read: " .. tostring(err)) end
    if data then self.server.read_bytes = self.server.read_bytes + #data end
    if self.lingering then
        if not data then self:close() end
        return
    end
    if not data then
        self.peer_eof = true
        self.reading = false
        -- A stream nobody will read any more is pointless to go on with;
        -- a whole answer is still owed to a client that half-closed.
        if self.res and self.res.streaming then return self:abort("client closed the connection") end
        if not self.res then self:process() end
        return
    end
    self.last_read = now()
    -- Fed as far as the parser has room, then parsed, and so on: a request
    -- over a limit gets the parser's own answer (413 at max_body) instead
    -- of a "too much buffered" on the bytes past it.
    local bytes, n, off = ffi.cast("const char *", data), #data, 0
    while off < n do
        local k = math.min(n - off, tonumber(C.apr_http_parser_room(self.parser)))
        if k == 0 then
            -- Only a client pipelining far ahead of its answers gets here
            -- (reading pauses long before): it loses the connection.
            if self.res then return self:abort("too much input buffered ahead of the answers") end
            return self:fail(413, "the request is larger than the server takes")
        end
        C.apr_http_parser_feed(self.parser, bytes + off, k)
        off = off + k
        if not self.res then self:process() end
        if self.closed or self.lingering then return end
    end
    self:update_reading()
end

-- Answers a request that could not be parsed, then closes.
function Conn:fail(status, message)
    if self.closed then return end
    self.close_after = true
    local req = { method = "GET", target = "", path = "", version = 11, keep_alive = false, headers = {},
                  t_start = uv.hrtime(), conn = self, peer = self.peer }
    local res = self:new_response(req)
    local body, ctype = self.server.error_body(status, message)
    res:header("Content-Type", ctype)
    if status == 503 or status == 429 then res:header("Retry-After", self.server.opts.retry_after or 1) end
    self.server:log("info", string.format("%s: %d %s", self.peer or "?", status, message))
    res:send(status, body)
end

function Conn:new_response(req)
    local res = setmetatable({
        req = req, conn = self, headers = {}, close_handlers = {}, bytes = 0,
        started = false, finished = false, closed = false, status = nil,
    }, Response)
    self.res = res
    return res
end

local function header_table(r)
    local headers = {}
    for i = 0, r.n_headers - 1 do
        local h = r.headers[i]
        local name = ffi.string(h.name, h.name_len):lower()
        local value = ffi.string(h.value, h.value_len)
        local old = headers[name]
        headers[name] = old and (old .. ", " .. value) or value
    end
    return headers
end

-- Takes requests out of the buffer, one at a time: the next is parsed only
-- once the current one is answered, so answers keep the requests' order.
function Conn:process()
    if self.in_process then return end
    self.in_process = true
    while not self.closed and not self.res and not self.lingering do
        local r = req_box[0]
        local kind = tonumber(C.apr_http_parser_next(self.parser, req_box))
        if kind == NEED_MORE then
            if self.head_started == nil and C.apr_http_parser_started(self.parser) ~= 0 then
                self.head_started = now()
            end
            break
        elseif kind == ERROR then
            self:fail(tonumber(r.status), ffi.string(r.error))
            break
        elseif kind == HEAD then
            self.head_started = self.head_started or now()
            self.body_started = now()
            if r.expect_continue ~= 0 then self:write("HTTP/1.1 100 Continue\r\n\r\n") end
        elseif kind == REQUEST then
            self:dispatch(r)
        end
    end
    self.in_process = false
    -- A client that half-closed gets the answers to what it sent, then we close.
    if not self.closed and not self.res and self.peer_eof and not self.lingering then
        self:close_gracefully()
    end
end

-- The path, query and host a request's target names: origin-form
-- "/path?query" (host from the Host header), absolute-form
-- "http://host/path?query", whose authority replaces Host (RFC 9112
-- 3.2.2), or asterisk-form "*". nil and a message for a target that is no
-- URL of this server's (another scheme, userinfo).
local function target_parts(target, host_header)
    local scheme, rest = target:match("^([%a][%w+.-]*)://(.*)$")
    if not scheme then
        local path, query = target:match("^([^?]*)%??(.*)$")
        return path, query, host_header
    end
    scheme = scheme:lower()
    if scheme ~= "http" and scheme ~= "https" then return nil, "request target with scheme " .. scheme end
    local authority, pq = rest:match("^([^/?#]*)(.*)$")
    if authority == "" or authority:find("@", 1, true) then return nil, "request target without a host, or with userinfo" end
    pq = pq:gsub("#.*$", "")
    if pq:sub(1, 1) == "?" then pq = "/" .. pq end
    if pq == "" then pq = "/" end
    local path, query = pq:match("^([^?]*)%??(.*)$")
    return path, query, authority
end

function Conn:dispatch(r)
    local server = self.server
    local target = ffi.string(r.target, r.target_len)
    local headers = header_table(r)
    local path, query, host = target_parts(target, headers["host"])
    if not path then
        self.head_started, self.body_started = nil, nil
        return self:fail(400, query)
    end
    local req = {
        method = ffi.string(r.method, r.method_len),
        target = target,
        path = path,
        query = query,
        host = host,
        version = tonumber(r.version),
        headers = headers,
        body = ffi.string(r.body, r.body_len),
        keep_alive = r.keep_alive ~= 0,
        peer = self.peer,
        conn = self,
        id = server:next_id(),
        t_start = uv.hrtime(),
    }
    self.head_started, self.body_started = nil, nil
    self.requests = self.requests + 1
    local res = self:new_response(req)
    local co = coroutine.create(server.handler)
    handler_res[co] = res
    M.resume(co, req, res)
end

-- A handler raised instead of answering: a 500 if nothing was sent yet,
-- otherwise the connection is cut (the client must not take half an
-- answer for a whole one).
function Conn:handler_failed(res, err, co)
    self.server:log("error", "handler failed: " .. tostring(err) ..
        (co and ("\n" .. debug.traceback(co)) or ""))
    if res.finished then return end
    if not res.started then
        self.close_after = true
        -- The message goes to the log only: it names files (see router.lua).
        local body, ctype = self.server.error_body(500, "the request handler failed (the server's log has the details)",
            nil, "handler_failed")
        res.headers = { { "Content-Type", ctype } }
        res:send(500, body)
    else
        self:abort("handler failed mid-response")
    end
end

function Conn:response_done(res)
    if self.res ~= res then return end
    self.res = nil
    self.last_read = now()
    self.server:response_done(res)
    if self.close_after or not res.req.keep_alive or self.server.draining then
        return self:close_gracefully()
    end
    self:update_reading()
    -- The next pipelined request, if any; deferred when we are inside
    -- process() already (a handler that answered at once).
    if not self.in_process then self:process() end
end

-- After the last answer: send what is queued, shut down our side, and read
-- (discarding) until the client closes or `linger` passes, so a client
-- still sending does not get a reset that destroys the answer.
function Conn:close_gracefully()
    if self.closed or self.lingering then return end
    self.lingering = true
    self:release_parser()  -- what arrives from now on is read and dropped
    self.linger_until = now() + self.server.opts.linger + self.server.opts.write_timeout
    local ok = self.tcp:shutdown(function()
        if self.closed then return end
        self.linger_until = now() + self.server.opts.linger
        if not self.reading and not self.peer_eof then
            self.reading = true
            self.tcp:read_start(function(err, data) self:on_read(err, data) end)
        end
        if self.peer_eof then self:close() end
    end)
    if not ok then self:close() end
end

-- The client is gone or misbehaved: stop everything now.
function Conn:abort(why)
    if self.closed then return end
    if self.res then
        self.server:log("debug", string.format("%s: aborted: %s", self.peer or "?", why))
        local res = self.res
        res:_abort()
        self.res = nil
        if not res.finished then
            res.status = res.status or 499
            res.aborted = why
            self.server:response_done(res)
        end
    end
    self:close()
end

-- Frees the parser and its buffer now, not when the collector gets to
-- the connection: a flood of rejected requests would otherwise leave their
-- buffers (up to max_body each) waiting for a collection that Lua's own
-- allocations, which are small, are slow to bring.
function Conn:release_parser()
    if self.parser then
        C.apr_http_parser_free(ffi.gc(self.parser, nil))
        self.parser = nil
    end
end

function Conn:close()
    if self.closed then return end
    self.closed = true
    self:release_parser()
    if self.res then
        local res = self.res
        self.res = nil
        res:_abort()
        if not res.finished then
            res.status = res.status or 499
            res.aborted = res.aborted or "connection closed"
            self.server:response_done(res)
        end
    end
    if not self.tcp:is_closing() then self.tcp:close() end
    self.server:forget(self)
end

-- Called by the server's sweep: enforces the timeouts.
function Conn:sweep(t)
    local o = self.server.opts
    if self.lingering then
        if t > self.linger_until then self:close() end
        return
    end
    if self.res then
        local q = self:queued()
        if q > 0 and t - self.last_progress > o.write_timeout then
            self:abort("client took nothing for " .. o.write_timeout .. " s")
        end
        return
    end
    if self.body_started and t - self.body_started > o.body_timeout then
        return self:fail(408, "request body not received within " .. o.body_timeout .. " s")
    end
    if self.head_started and not self.body_started and t - self.head_started > o.header_timeout then
        return self:fail(408, "request head not received within " .. o.header_timeout .. " s")
    end
    -- A connection that never sends its first request has header_timeout
    -- from accept, not idle_timeout: idle sockets are cheap to open by the
    -- thousand and would otherwise hold every slot for a minute. It sent
    -- nothing, so it is closed without an answer.
    if not self.head_started and self.requests == 0 and t - self.accepted_at > o.header_timeout then
        return self:close()
    end
    if not self.head_started and t - self.last_read > o.idle_timeout then
        self:close()
    end
end

------------------------------------------------------------------ the server

local Server = {}
Server.__index = Server

function Server:log(level, msg)
    if self.opts.log then self.opts.log(level, msg) end
end

function Server:next_id()
    self.n_requests = self.n_requests + 1
    return self.n_requests
end

function Server:response_done(res)
    if self.opts.on_response then
        local ok, err = pcall(self.opts.on_response, res.req, res)
        if not ok then self:log("error", "on_response failed: " .. tostring(err)) end
    end
    self:check_drained()
end

function Server:forget(conn)
    if self.conns[conn] then
        self.conns[conn] = nil
        self.n_conns = self.n_conns - 1
        local n = (self.per_ip[conn.ip] or 1) - 1
        self.per_ip[conn.ip] = n > 0 and n or nil
    end
    self:check_drained()
end

function Server:on_connection(err)
    if err then return self:log("error", "accept: " .. tostring(err)) end
    local tcp = uv.new_tcp()
    if not self.listener or not pcall(self.listener.accept, self.listener, tcp) then
        tcp:close()
        return
    end
    tcp:nodelay(true)  -- tokens are small writes that must not wait for Nagle
    local limits = ffi.new("apr_http_limits", { self.opts.max_head, self.opts.max_headers, self.opts.max_body })
    local parser = C.apr_http_parser_new(limits)
    if parser == nil then
        tcp:close()
        return self:log("error", "http parser: " .. core.last_error())
    end
    local peer = tcp:getpeername()
    local ip = peer and peer.ip or "?"
    local conn = setmetatable({
        server = self, tcp = tcp, parser = ffi.gc(parser, C.apr_http_parser_free),
        peer = peer and (peer.ip .. ":" .. peer.port) or "?", ip = ip,
        accepted_at = now(), last_read = now(), last_progress = now(), requests = 0,
        reading = false, closed = false, peer_eof = false,
    }, Conn)
    self.conns[conn] = true
    self.n_conns = self.n_conns + 1
    self.per_ip[ip] = (self.per_ip[ip] or 0) + 1
    local cap = self.opts.max_connections_per_client or 0
    if self.n_conns > self.opts.max_connections or self.draining then
        conn:fail(503, self.draining and "the server is shutting down" or
            ("more than " .. self.opts.max_connections .. " connections"))
        return
    end
    -- One address may not take every slot: the rest of the clients still
    -- get in while it holds its share.
    if cap > 0 and self.per_ip[ip] > cap then
        conn:fail(429, "more than " .. cap .. " connections from one address")
        return
    end
    conn:update_reading()
end

-- Stops taking new connections; those open go on.
function Server:stop_accepting()
    if self.listener then
        self.listener:close()
        self.listener = nil
    end
end

-- Graceful shutdown: no new connections, idle ones closed, busy ones closed
-- after their current answer; on_drained() runs once none is left.
function Server:drain(on_drained)
    self.draining = true
    self.on_drained = on_drained
    self:stop_accepting()
    for conn in pairs(self.conns) do
        if not conn.res then conn:close_gracefully() end
    end
    self:check_drained()
end

function Server:check_drained()
    if self.draining and self.n_conns == 0 and self.on_drained then
        local fn = self.on_drained
        self.on_drained = nil
        fn()
    end
end

-- Closes everything now (after a drain timed out, or in tests).
function Server:close()
    self:stop_accepting()
    for conn in pairs(self.conns) do conn:abort("server closing") end
    if self.sweeper then
        self.sweeper:close()
        self.sweeper = nil
    end
end

function Server:connections() return self.n_conns end

-- Every byte read arrives as a Lua string (luv's reads), garbage once
-- parsed or dropped. Lua's collector runs only as Lua allocates, so after a
-- flood of large requests that garbage would stay put, however idle the
-- server then is. A full collection after every GC_AFTER bytes read (at
-- most once a second) hands it back.
local GC_AFTER = 64 * 2 ^ 20
function Server:collect(t)
    if self.read_bytes - self.read_at_gc < GC_AFTER or t - self.gc_at < 1 then return end
    self.read_at_gc, self.gc_at = self.read_bytes, t
    collectgarbage("collect")
end

-- Resolves host to an address libuv can bind.
local function resolve(host)
    if host:match("^[%d.]+$") or host:find(":") then return host end
    local res = uv.getaddrinfo(host, nil, { socktype = "stream" })
    if not res or not res[1] then return nil, "cannot resolve host '" .. host .. "'" end
    return res[1].addr
end

-- listen{ handler = function(req, res) ... end, host, port, ... } -> server
-- or nil, message. port 0 picks a free port (server.port says which).
-- error_body(status, message) -> body, content type: the answer to requests
-- that fail before any handler sees them (parse errors, timeouts, limits).
function M.listen(opts)
    local o = {}
    for k, v in pairs(M.defaults) do o[k] = v end
    for k, v in pairs(opts) do o[k] = v end
    assert(type(o.handler) == "function", "listen: handler required")
    local addr, rerr = resolve(o.host)
    if not addr then return nil, rerr end
    local tcp = uv.new_tcp()
    local ok, err = tcp:bind(addr, o.port)
    if not ok then
        tcp:close()
        return nil, string.format("cannot listen on %s:%d: %s", o.host, o.port, tostring(err))
    end
    local self = setmetatable({
        opts = o, handler = o.handler, listener = tcp, conns = {}, n_conns = 0, n_requests = 0,
        per_ip = {},   -- client address -> its open connections
        read_bytes = 0, read_at_gc = 0, gc_at = 0,  -- for Server:collect
        error_body = o.error_body or function(status, message)
            return string.format("%d %s: %s\n", status, M.reasons[status] or "", message), "text/plain"
        end,
    }, Server)
    ok, err = tcp:listen(o.backlog, function(e) self:on_connection(e) end)
    if not ok then
        tcp:close()
        return nil, string.format("cannot listen on %s:%d: %s", o.host, o.port, tostring(err))
    end
    local name = tcp:getsockname()
    self.host, self.port = name.ip, name.port
    -- One timer checks every connection's deadlines: cheaper than a timer
    -- per connection, and precise enough (a quarter of the shortest timeout).
    local shortest = math.min(o.header_timeout, o.body_timeout, o.idle_timeout, o.write_timeout, o.linger)
    local period = math.max(20, math.min(1000, math.floor(shortest * 250)))
    self.sweeper = uv.new_timer()
    self.sweeper:start(period, period, function()
        local t = now()
        for conn in pairs(self.conns) do conn:sweep(t) end
        self:collect(t)
    end)
    self.sweeper:unref()
    return self
end

return M
