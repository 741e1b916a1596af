-- serve_helper.lua — starts `apr serve` on a free loopback port for a spec,
-- and stops it (always: call stop in teardown).
--
--   local s = serve.start("--parallel 4")       -- the tiny fixture model
--   client.request(s.port, "GET", "/health")
--   local code = s:stop()                       -- SIGTERM, waits, exit code
local uv = require "luv"
local h = require "tests.lua.helpers"

local M = {}

M.MODEL = "tests/fixtures/models/tiny-q8_0.gguf"

local Server = {}
Server.__index = Server

local sleep = require("tests.lua.apr.server.client").sleep
M.sleep = sleep

local function slurp(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

-- start(args [, model [, wait_for [, env]]]) -> server with .port, .pid,
-- .log(); raises if it does not log wait_for ("model ready") within 20 s.
-- --port 0 lets the kernel pick a free port, which the server logs. env
-- ("A=1 B=2") is set for the server.
function M.start(args, model, wait_for, env)
    local dir = h.tmpdir()
    local self = setmetatable({ dir = dir, log_path = dir .. "/log", pid_path = dir .. "/pid",
                                code_path = dir .. "/code" }, Server)
    local cmd = string.format("( %s%s serve %s --port 0 %s 2>%s >/dev/null & echo $! > %s; wait $!; echo $? > %s ) " ..
        ">/dev/null 2>&1 </dev/null &", env and ("env " .. env .. " ") or "", h.apr_bin, model or M.MODEL, args or "",
        self.log_path, self.pid_path, self.code_path)
    os.execute(cmd)
    for _ = 1, 400 do
        local log = slurp(self.log_path) or ""
        self.pid = self.pid or tonumber(slurp(self.pid_path) or "")
        local port = log:match("port=(%d+)")
        if port and log:find(wait_for or "model ready", 1, true) then
            self.port = tonumber(port)
            return self
        end
        if slurp(self.code_path) then break end
        sleep(50)
    end
    local log = slurp(self.log_path) or ""
    self:kill()
    error("apr serve did not start: " .. log)
end

-- hold_open(dir) -> env, release: the environment under which the server's
-- open() of dir/held.gguf waits until the file `release` exists
-- (hold_open.c, compiled here with cc), or nil and why not.
function M.hold_open(dir)
    local so = dir .. "/hold_open.so"
    local src = h.root .. "/tests/lua/apr/server/hold_open.c"
    if not os.execute(string.format("cc -shared -fPIC -O1 -o %s %s -ldl 2>/dev/null", so, src)) then
        return nil, "cc cannot build hold_open.c"
    end
    local release = dir .. "/release"
    return string.format("LD_PRELOAD=%s APR_TEST_HOLD=%s APR_TEST_RELEASE=%s", so, dir .. "/held.gguf", release), release
end

function Server:log() return slurp(self.log_path) or "" end

function Server:signal(name)
    if self.pid then os.execute(string.format("kill -%s %d 2>/dev/null", name, self.pid)) end
end

-- The exit code once the process has ended, or nil after timeout seconds.
function Server:wait(timeout)
    for _ = 1, math.floor((timeout or 10) * 20) do
        local code = slurp(self.code_path)
        if code and code ~= "" then return tonumber(code) end
        sleep(50)
    end
end

-- SIGTERM, then the exit code (SIGKILL after 10 s: then nil).
function Server:stop()
    if self.stopped then return self.code end
    self.stopped = true
    self:signal("TERM")
    self.code = self:wait(10)
    if not self.code then self:kill() end
    self.final_log = self:log()  -- what it logged up to its exit, for specs that read it after stop
    h.rmtree(self.dir)
    return self.code
end

function Server:kill()
    self.stopped = true
    self:signal("KILL")
    self:wait(2)
    pcall(h.rmtree, self.dir)
end

return M
