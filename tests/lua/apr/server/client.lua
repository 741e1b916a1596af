-- client.lua — a raw HTTP/1.1 client on luv for the server specs: sends
-- exact bytes (malformed ones too), in pieces and with pauses if asked,
-- and parses what comes back. Several exchanges can run at once in one
-- loop (client.run), so specs can test concurrency from one process.
local uv = require "luv"

local M = {}

-- Parses one response from buf; returns it and the rest of buf, or nil if
-- it is not complete yet. eof: the connection has closed (a body without
-- a length ends there).
local function parse_response(buf, eof, head_only)
    local head_end = buf:find("\r\n\r\n", 1, true)
    if not head_end then return nil end
    local head = buf:sub(1, head_end - 1)
    local status_line = head:match("^[^\r\n]*")
    local status = tonumber(status_line:match("^HTTP/1%.[01] (%d%d%d)"))
    local headers = {}
    for line in head:gmatch("\r\n([^\r\n]*)") do
        local k, v = line:match("^([^:]+):%s*(.-)%s*$")
        if k then headers[k:lower()] = v end
    end
    local rest = buf:sub(head_end + 4)
    if status and status < 200 then
        -- 100 Continue: an interim response, then the real one.
        local r, after = parse_response(rest, eof, head_only)
        if r then r.interim = status end
        return r, after
    end
    local r = { status = status, headers = headers, status_line = status_line }
    if head_only then
        r.body = ""
        return r, rest
    end
    if headers["transfer-encoding"] == "chunked" then
        local body, i = {}, 1
        while true do
            local lf = rest:find("\r\n", i, true)
            if not lf then return nil end
            local size = tonumber(rest:sub(i, lf - 1):match("^%x+"), 16)
            if not size then error("bad chunk size in response: " .. rest:sub(i, lf - 1)) end
            if size == 0 then
                if #rest < lf + 3 then return nil end
                r.body = table.concat(body)
                r.chunks = body
                return r, rest:sub(lf + 4)
            end
            if #rest < lf + 1 + size + 2 then return nil end
            body[#body + 1] = rest:sub(lf + 2, lf + 1 + size)
            i = lf + 2 + size + 2
        end
    end
    local len = tonumber(headers["content-length"])
    if len then
        if #rest < len then return nil end
        r.body = rest:sub(1, len)
        return r, rest:sub(len + 1)
    end
    if not eof then return nil end
    r.body = rest
    return r, ""
end
M.parse_response = parse_response

-- exchange{ port, send = "bytes" or { pieces }, delay = ms between pieces,
--   bind = local address to connect from,
--   expect = n responses (1), shutdown = true (half-close after sending),
--   close_after_bytes = n (close once n bytes came back), head_only }
-- Runs inside client.run; fills exchange.responses, .closed, .error, .raw.
local function start(ex)
    local tcp = uv.new_tcp()
    ex.tcp, ex.responses, ex.raw, ex.closed = tcp, {}, "", false
    ex.expect = ex.expect or 1
    if ex.bind then assert(tcp:bind(ex.bind, 0)) end  -- a client address of its own (127.0.0.2)
    local pieces = type(ex.send) == "table" and ex.send or { ex.send }
    local function finish()
        if ex.done then return end
        ex.done = true
        ex.t_done = uv.hrtime()
        if not tcp:is_closing() then tcp:close() end
        -- No handle outlives its exchange (luv crashes at exit on open ones).
        if ex.timer and not ex.timer:is_closing() then ex.timer:close() end
    end
    ex.finish = finish
    tcp:connect(ex.host or "127.0.0.1", ex.port, function(err)
        if err then
            ex.error = err
            return finish()
        end
        ex.t_connect = uv.hrtime()
        tcp:read_start(function(rerr, data)
            if rerr then
                ex.error = rerr
                return finish()
            end
            if not data then
                ex.closed = true
                local r = parse_response(ex.buf or "", true, ex.head_only)
                if r and #ex.responses < ex.expect then ex.responses[#ex.responses + 1] = r end
                return finish()
            end
            ex.t_first_byte = ex.t_first_byte or uv.hrtime()
            ex.raw = ex.raw .. data
            ex.buf = (ex.buf or "") .. data
            if ex.on_data then ex.on_data(ex, data) end
            if ex.close_after_bytes and #ex.raw >= ex.close_after_bytes then return finish() end
            while true do
                local r, rest = parse_response(ex.buf, false, ex.head_only)
                if not r then break end
                ex.responses[#ex.responses + 1] = r
                ex.buf = rest
            end
            if #ex.responses >= ex.expect and not ex.keep_open then finish() end
        end)
        local i = 0
        local function send_next()
            i = i + 1
            if ex.done then return end
            if i > #pieces then
                if ex.shutdown then tcp:shutdown() end
                return
            end
            tcp:write(pieces[i], i == #pieces and function() ex.sent = uv.hrtime() end or nil)
            if (ex.delay or 0) > 0 and i < #pieces then
                local t = uv.new_timer()
                ex.timer = t
                t:start(ex.delay, 0, function()
                    t:close()
                    ex.timer = nil
                    send_next()
                end)
            else
                send_next()
            end
        end
        send_next()
    end)
end

-- Runs the loop until done() is true or timeout seconds pass; returns
-- done(). One iteration at a time, so neither a server in this loop (which
-- keeps it alive) nor a uv.stop() left over from elsewhere cuts it short.
function M.run_until(done, timeout)
    uv.update_time()
    local deadline = uv.now() + (timeout or 10) * 1000
    local tick = uv.new_timer()
    tick:start(5, 5, function() end)  -- wakes the loop to look at the clock
    while not done() and uv.now() < deadline do uv.run("once") end
    tick:close()
    uv.run("nowait")
    return done()
end

-- run(exchanges, timeout_s): runs them all at once; returns when each is
-- done or the timeout passes (those still open are closed, .timed_out set).
-- An exchange with after = { other, ms } starts ms after other's bytes are
-- all written (other.sent), one with start_after = ms that long after the
-- others start.
function M.run(exchanges, timeout)
    uv.update_time()
    local t0 = uv.now()
    local function ready(ex)
        if ex.after then return ex.after[1].sent and (uv.hrtime() - ex.after[1].sent) * 1e-6 >= (ex.after[2] or 0) end
        return uv.now() - t0 >= (ex.start_after or 0)
    end
    local pending = {}
    for _, ex in ipairs(exchanges) do
        if ready(ex) then start(ex) else pending[#pending + 1] = ex end
    end
    M.run_until(function()
        for i = #pending, 1, -1 do
            if ready(pending[i]) then
                start(pending[i])
                table.remove(pending, i)
            end
        end
        if #pending > 0 then return false end
        for _, ex in ipairs(exchanges) do
            if not ex.done then return false end
        end
        return true
    end, timeout or 10)
    for _, ex in ipairs(pending) do
        ex.done, ex.timed_out, ex.responses = true, true, {}
    end
    for _, ex in ipairs(exchanges) do
        if not ex.done then
            ex.timed_out = true
            ex.finish()
        end
    end
    uv.run("nowait")
    return exchanges
end

-- Lets the loop run for ms milliseconds.
function M.sleep(ms)
    uv.update_time()
    local t0 = uv.now()
    M.run_until(function() return uv.now() - t0 >= ms end, ms / 1000 + 1)
end

-- raw(method, path, body, headers) -> the raw bytes of a request. A body
-- goes as JSON (Content-Type: application/json, as `apr serve` wants for
-- POST) unless headers say otherwise; a header given as false is left out
-- (Host, Content-Type).
function M.raw(method, path, body, headers)
    headers = headers or {}
    local lines = { method .. " " .. path .. " HTTP/1.1" }
    local given = {}
    for k in pairs(headers) do given[k:lower()] = true end
    if not given.host then lines[#lines + 1] = "Host: localhost" end
    if body and not given["content-type"] then lines[#lines + 1] = "Content-Type: application/json" end
    for k, v in pairs(headers) do
        if v ~= false then lines[#lines + 1] = k .. ": " .. v end
    end
    if body then lines[#lines + 1] = "Content-Length: " .. #body end
    return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- One request, one response: { status, headers, body } (nil, error on failure).
function M.request(port, method, path, body, headers, timeout)
    local ex = { port = port, send = M.raw(method, path, body, headers) }
    M.run({ ex }, timeout or 20)
    if ex.responses[1] then return ex.responses[1] end
    return nil, ex.error or (ex.timed_out and "timed out") or "closed without a response"
end

-- The data: payloads of an SSE body, in order.
function M.sse_events(body)
    local events = {}
    for data in body:gmatch("data: ([^\n]*)\n\n") do events[#events + 1] = data end
    return events
end

return M
