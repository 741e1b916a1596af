-- server/router.lua — routes, the API key, and errors in OpenAI's format.
--
--   local app = router.new{ api_key = "sk-..." }
--   app:get("/v1/models", function(req, res) res:json(200, {...}) end)
--   app:post("/v1/things/:id", function(req, res) local body = req.json ... end)
--   http.listen{ handler = app:handler(), error_body = router.error_body }
--
-- Every failure reaches the client as OpenAI's error object,
--   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}},
-- with the status that fits: 400 for a body that is not valid UTF-8 or JSON
-- or has bad fields (router.fail(400, msg, param)), 401 for a missing or
-- wrong key (every path but the public ones, /health by default; the admin
-- key for /admin/ paths), 403 for admin routes that are off and for what
-- the guard (server/guard.lua) refuses, 404 for an unknown path, 405 with
-- Allow for a known path and the wrong method, 500 for a handler that
-- raised (its message, which names files, goes to the log; the server
-- stays up).
local json = require "apr.json"

local M = {}

------------------------------------------------------------------ errors

local HttpError = {}
HttpError.__index = HttpError
HttpError.__tostring = function(e) return e.message end

-- fail(status, message [, param [, code [, type]]]) raises an error that
-- becomes this status and error object (from a handler or from req.json).
function M.fail(status, message, param, code, etype)
    error(setmetatable({ status = status, message = message, param = param, code = code, type = etype,
                         headers = nil }, HttpError), 0)
end

function M.is_error(e) return getmetatable(e) == HttpError end

local function default_type(status)
    if status == 429 then return "rate_limit_error" end
    if status >= 500 then return "server_error" end
    return "invalid_request_error"
end

-- The error object, as a JSON string, and its content type: the server's
-- answer to anything that goes wrong (http.lua calls it for parse errors).
function M.error_body(status, message, param, code, etype)
    local err = json.object()
    err.message = message
    err.type = etype or default_type(status)
    err.param = param == nil and json.null or param
    err.code = code == nil and json.null or code
    local body = json.object()
    body.error = err
    return json.encode(body, { separators = { ",", ":" } }), "application/json"
end

------------------------------------------------------------------ requests

-- req.json: the body decoded on first use, key order kept (chat templates
-- see tool arguments in the order the client sent them).
-- A large body is decoded off the event loop (server/body.lua), so the
-- first use of req.json may wait.
local function decode_body(req)
    local body = req.body or ""
    if body == "" then M.fail(400, "the request body is empty; expected a JSON object") end
    local value, kind, detail = require("apr.server.body").decode(body)
    if kind == "utf8" then M.fail(400, string.format("the request body is not valid UTF-8 (byte %d)", detail)) end
    if value == nil then M.fail(400, "the request body is not valid JSON: " .. tostring(detail)) end
    return value
end

local Request = {}
function Request.__index(req, k)
    if k == "json" then
        local v = decode_body(req)
        rawset(req, "json", v)
        return v
    end
end

------------------------------------------------------------------ the router

local Router = {}
Router.__index = Router

-- new{ api_key = KEY or nil, public = { ["/health"] = true },
--      admin_key = KEY or nil, guard = guard.new{...} or nil }
-- Paths under /admin/ are the admin routes: answered 403 unless admin_key
-- is set, and then they need that key (not the API key). guard, when
-- given, checks every request first (server/guard.lua).
function M.new(opts)
    opts = opts or {}
    return setmetatable({
        api_key = opts.api_key,
        admin_key = opts.admin_key,
        guard = opts.guard,
        public = opts.public or { ["/health"] = true },
        exact = {},      -- path -> { METHOD = fn }
        patterns = {},   -- { segments, methods } for paths with :params
    }, Router)
end

local ADMIN_PREFIX = "/admin/"
function M.is_admin_path(path) return path:sub(1, #ADMIN_PREFIX) == ADMIN_PREFIX end

local function split(path)
    local segs = {}
    for seg in path:gmatch("[^/]+") do segs[#segs + 1] = seg end
    return segs
end

-- app:route(method, path, fn): a later route for the same method and path
-- replaces the earlier one (route scripts override built-in endpoints).
function Router:route(method, path, fn)
    assert(type(path) == "string" and path:sub(1, 1) == "/", "route path must start with /")
    assert(type(fn) == "function", "route handler must be a function")
    method = method:upper()
    if not path:find("/:", 1, true) then
        self.exact[path] = self.exact[path] or { path = path, methods = {} }
        self.exact[path].methods[method] = fn
        return self
    end
    for _, p in ipairs(self.patterns) do
        if p.path == path then
            p.methods[method] = fn
            return self
        end
    end
    self.patterns[#self.patterns + 1] = { path = path, segs = split(path), methods = { [method] = fn } }
    return self
end

function Router:get(path, fn) return self:route("GET", path, fn) end
function Router:post(path, fn) return self:route("POST", path, fn) end
function Router:put(path, fn) return self:route("PUT", path, fn) end
function Router:delete(path, fn) return self:route("DELETE", path, fn) end

-- The route of path ({ path =, methods = }) and the captured :params, or nil.
function Router:match(path)
    local m = self.exact[path]
    if m then return m, {} end
    local segs = split(path)
    for _, p in ipairs(self.patterns) do
        if #p.segs == #segs then
            local params = {}
            for i, s in ipairs(p.segs) do
                if s:sub(1, 1) == ":" then
                    params[s:sub(2)] = segs[i]
                elseif s ~= segs[i] then
                    params = nil
                    break
                end
            end
            if params then return p, params end
        end
    end
end

-- Compares in time independent of where the strings differ.
local function same_secret(a, b)
    if type(a) ~= "string" or #a ~= #b then return false end
    local diff = 0
    for i = 1, #a do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
    return diff == 0
end

-- Whether the request carries the key its path needs: the admin key for
-- admin paths (checked once they are known to be on), the API key for the
-- rest but the public ones.
function Router:authorized(req)
    local key = self.api_key
    if M.is_admin_path(req.path) then key = self.admin_key end
    if not key or self.public[req.path] then return true end
    local auth = req.headers["authorization"] or ""
    local token = auth:match("^[Bb]earer%s+(%S+)%s*$")
    return same_secret(token, key)
end

local function allow_list(methods)
    local list = {}
    for m in pairs(methods) do list[#list + 1] = m end
    if methods.GET and not methods.HEAD then list[#list + 1] = "HEAD" end
    table.sort(list)
    return table.concat(list, ", ")
end

-- Answers an error raised by a handler or by the router itself.
local function answer_error(res, e)
    if res.finished or res.closed then return end
    if M.is_error(e) then
        if e.headers then
            for k, v in pairs(e.headers) do res:header(k, v) end
        end
        return res:error(e.status, e.message, e.param, e.code, e.type)
    end
    local msg = tostring(e)
    if not res.started then return res:error(500, msg) end
    -- Half an answer is out: cut the connection rather than end it cleanly.
    res.conn:abort("handler failed mid-response: " .. msg)
end

-- Handles one request (in its coroutine): the function to give http.listen.
function Router:dispatch(req, res)
    setmetatable(req, Request)
    req.app = self
    if self.guard then
        local status, message, code = self.guard:check(req)
        if status then return res:error(status, message, nil, code) end
    end
    if M.is_admin_path(req.path) and not self.admin_key then
        return res:error(403, "the admin routes are off (start apr serve with --admin-key KEY, " ..
            "or --admin to put them under --api-key)", nil, "admin_disabled")
    end
    if not self:authorized(req) then
        local has = req.headers["authorization"]
        return res:error(401, has and "Incorrect API key provided." or
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
            nil, "invalid_api_key")
    end
    local route, params = self:match(req.path)
    if not route then
        return res:error(404, string.format("Unknown request URL: %s %s", req.method, req.path), nil, "unknown_url")
    end
    local methods = route.methods
    local fn = methods[req.method] or (req.method == "HEAD" and methods.GET)
    if not fn then
        res:header("Allow", allow_list(methods))
        return res:error(405, string.format("Method %s is not allowed on %s", req.method, req.path),
            nil, "method_not_allowed")
    end
    req.params = params
    req.route = route.path
    local ok, err = xpcall(fn, function(e)
        if M.is_error(e) then return e end
        return debug.traceback(tostring(e), 2)
    end, req, res)
    if not ok then
        if not M.is_error(err) then
            -- A handler that raised: its message names files (the script's
            -- own path, whatever it opened) and may quote their bytes, so it
            -- goes to the log, and the client learns only that it failed.
            local where = res.conn and res.conn.server
            if where then where:log("error", string.format("%s %s: %s", req.method, req.path, err)) end
            err = setmetatable({ status = 500, code = "handler_failed",
                message = "the request handler failed (the server's log has the details)" }, HttpError)
        end
        answer_error(res, err)
    end
end

function Router:handler()
    return function(req, res) return self:dispatch(req, res) end
end

return M
