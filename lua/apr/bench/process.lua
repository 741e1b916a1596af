-- bench/process.lua — the servers `apr bench` starts: spawning one with
-- its output in a log file, waiting for /health, reading its memory and CPU
-- time from /proc, and stopping it (SIGTERM, then SIGKILL).
local uv = require "luv"
local task = require "apr.bench.task"
local client = require "apr.bench.client"

local M = {}

-- which(name) -> the executable's path on PATH, or nil.
function M.which(name)
    if name:find("/", 1, true) then return uv.fs_access(name, "X") and name or nil end
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
        local p = dir .. "/" .. name
        local st = uv.fs_stat(p)
        if st and st.type ~= "directory" and uv.fs_access(p, "X") then return p end
    end
    return nil
end

-- A free TCP port on loopback (the kernel's choice, released at once: the
-- server binds it a moment later).
function M.free_port()
    local tcp = uv.new_tcp()
    tcp:bind("127.0.0.1", 0)
    local port = tcp:getsockname().port
    tcp:close()
    return port
end

local Proc = {}
Proc.__index = Proc

-- spawn{ exe, args = {...}, env = { NAME = value } (added to ours), log =
-- path (stdout and stderr) } -> proc, or nil and why.
function M.spawn(o)
    local env = uv.os_environ()
    for k, v in pairs(o.env or {}) do env[k] = v end
    local list = {}
    for k, v in pairs(env) do list[#list + 1] = k .. "=" .. v end
    local fd = o.log and uv.fs_open(o.log, "w", tonumber("644", 8))
    local self = setmetatable({ exe = o.exe, log = o.log, t_spawn = task.now() }, Proc)
    local handle, pid = uv.spawn(o.exe, { args = o.args, env = list, stdio = { nil, fd or nil, fd or nil },
                                          detached = false },
        function(code, signal)
            self.exit_code, self.exit_signal = code, signal
            self.exited = true
            if self.on_exit then self.on_exit() end
        end)
    if fd then uv.fs_close(fd) end
    if not handle then return nil, string.format("cannot start %s: %s", o.exe, tostring(pid)) end
    self.handle, self.pid = handle, pid
    return self
end

-- The last lines of the server's log, for error messages.
function Proc:log_tail(n)
    if not self.log then return "" end
    local f = io.open(self.log, "rb")
    if not f then return "" end
    local text = f:read("*a") or ""
    f:close()
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    return table.concat(lines, "\n", math.max(1, #lines - (n or 8) + 1))
end

-- /proc/PID/status fields in bytes: VmRSS now, VmHWM the peak so far.
function Proc:memory()
    local f = io.open("/proc/" .. self.pid .. "/status", "r")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    local rss, hwm = text:match("VmRSS:%s*(%d+) kB"), text:match("VmHWM:%s*(%d+) kB")
    return { rss = rss and tonumber(rss) * 1024, hwm = hwm and tonumber(hwm) * 1024 }
end

-- CPU seconds the process has used (user + system, its threads together).
local CLK_TCK = 100  -- sysconf(_SC_CLK_TCK) on every Linux of the last decades
function Proc:cpu_seconds()
    local f = io.open("/proc/" .. self.pid .. "/stat", "r")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    -- Fields after the command's closing parenthesis (the command may hold spaces).
    local rest = text:match("%) (.*)$")
    if not rest then return nil end
    local fields = {}
    for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
    -- state is field 3 of the whole line, so utime (14) and stime (15) are 12 and 13 here.
    return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK
end

-- wait_ready(url, timeout_s [, path]) -> seconds from spawn to the first
-- 200 from GET url/health, or nil and why (the process exited, or the
-- time ran out).
function Proc:wait_ready(base, timeout, path)
    local u = assert(client.parse_url(base))
    local deadline = task.now() + timeout
    while true do
        if self.exited then
            return nil, string.format("exited (code %s%s) before it was ready:\n%s", tostring(self.exit_code),
                (self.exit_signal or 0) ~= 0 and (", signal " .. self.exit_signal) or "", self:log_tail(12))
        end
        local r = task.await(function(cb)
            client.request({ host = u.host, port = u.port, path = u.base .. (path or "/health"), timeout = 5 }, cb)
        end)
        if r.status == 200 then return task.now() - self.t_spawn end
        if task.now() > deadline then
            return nil, string.format("not ready after %g s (last answer: %s):\n%s", timeout,
                r.error or ("HTTP " .. tostring(r.status)), self:log_tail(12))
        end
        task.sleep(50)
    end
end

-- stop(grace_s): SIGTERM, then SIGKILL if it has not exited within
-- grace_s; returns once it has exited.
function Proc:stop(grace)
    if not self.exited then
        self.handle:kill("sigterm")
        local deadline = task.now() + (grace or 10)
        while not self.exited and task.now() < deadline do task.sleep(20) end
        if not self.exited then
            self.handle:kill("sigkill")
            while not self.exited do task.sleep(20) end
        end
    end
    if not self.handle:is_closing() then self.handle:close() end
end

-- Last resort (Ctrl+C, a failure elsewhere): kill it without waiting.
function Proc:kill()
    if not self.exited and self.handle and not self.handle:is_closing() then
        self.handle:kill("sigkill")
    end
end

return M
