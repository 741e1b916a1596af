-- server/guard.lua — the checks a request passes before any route sees it,
-- against a web page the operator happens to visit:
--
--   * Host must name this server (DNS rebinding: a page on evil.example
--     that re-resolves its name to 127.0.0.1 reaches the server, but its
--     requests carry Host: evil.example). Allowed: the bound address (every
--     interface address when bound to 0.0.0.0 or ::), loopback forms
--     (localhost, *.localhost, 127.0.0.0/8, ::1), and the names configured
--     with --host-name ("*" turns the check off, for a proxy that checks
--     Host itself).
--   * Origin, when a browser sends one, must be such a host too: a
--     cross-origin page gets 403 even for the requests a browser sends
--     without asking (simple requests), and no CORS header is ever sent,
--     so it cannot read answers either.
--   * POST, PUT and PATCH need Content-Type: application/json (415
--     otherwise): a browser sends a cross-origin request with any other
--     type without a preflight, JSON only after one that this server never
--     grants.
--
--   local g = guard.new{ bound = "127.0.0.1", names = { "api.example" } }
--   local status, message, code = g:check(req)   -- nil when the request may pass
local uv = require "luv"

local M = {}

local Guard = {}
Guard.__index = Guard

-- The host part of a Host header or of an Origin's authority, lower-cased,
-- without port, brackets or a trailing dot; nil when malformed.
function M.host_of(authority)
    if type(authority) ~= "string" then return nil end
    local a = authority:lower()
    local host, port
    if a:sub(1, 1) == "[" then
        host, port = a:match("^%[([%x:%.]+)%](.*)$")
    elseif a:find(":.*:") then
        host, port = a, ""  -- a bare IPv6 address (a bind address, not a Host header)
    else
        host, port = a:match("^([^:]*)(.*)$")
    end
    if not host or host == "" then return nil end
    if port ~= "" and not port:match("^:%d*$") then return nil end
    if host:find("[^%w%.%-_:]") then return nil end
    return (host:gsub("%.$", ""))
end

local function is_loopback(host)
    return host == "localhost" or host:match("%.localhost$") ~= nil or host == "::1" or
        host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- new{ bound = ADDRESS, names = { NAME, ... } } -> guard. bound is the
-- address the server listens on; names the extra host names allowed.
function M.new(opts)
    local allowed, any = {}, false
    for _, n in ipairs(opts.names or {}) do
        if n == "*" then any = true end
        local h = M.host_of(n)
        if h then allowed[h] = true end
    end
    local bound = opts.bound and opts.bound:lower():gsub("^%[(.*)%]$", "%1")
    if bound == "0.0.0.0" or bound == "::" then
        -- Every interface's address, as clients on the network name it.
        for _, list in pairs(uv.interface_addresses() or {}) do
            for _, a in ipairs(list) do allowed[a.ip:lower()] = true end
        end
    elseif bound then
        allowed[bound] = true
    end
    return setmetatable({ allowed = allowed, any = any }, Guard)
end

-- allow(name): one more host name or address clients may use.
function Guard:allow(name)
    local h = M.host_of(name)
    if h then self.allowed[h] = true end
end

function Guard:host_allowed(host)
    if self.any then return true end
    return host ~= nil and (is_loopback(host) or self.allowed[host] == true)
end

local BODY_METHODS = { POST = true, PUT = true, PATCH = true }

-- Content-Type application/json, with parameters allowed (charset: UTF-8).
local function is_json(ctype)
    if not ctype then return false end
    local media, params = ctype:lower():match("^%s*([^;%s]+)%s*(.*)$")
    if media ~= "application/json" then return false end
    local charset = params:match("charset%s*=%s*\"?([%w%-_]+)")
    return charset == nil or charset == "utf-8"
end

-- check(req) -> nil when the request may go on, else status, message, code.
-- req.host is the request's host: the Host header, or the authority of an
-- absolute-form target (RFC 9112 3.2.2).
function Guard:check(req)
    local host = M.host_of(req.host)
    if not self:host_allowed(host) then
        return 403, "this server does not answer for that Host (start apr serve with --host-name NAME to allow one)",
            "host_not_allowed"
    end
    local origin = req.headers["origin"]
    if origin and not self.any then
        local authority = origin:match("^[%a][%w+.-]*://([^/]*)$")
        if not self:host_allowed(authority and M.host_of(authority)) then
            return 403, "cross-origin requests are not allowed", "origin_not_allowed"
        end
    end
    if BODY_METHODS[req.method] and not is_json(req.headers["content-type"]) then
        return 415, "the request body must be sent as 'Content-Type: application/json'", "unsupported_media_type"
    end
end

return M
