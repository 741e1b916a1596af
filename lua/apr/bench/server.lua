-- bench/server.lua — what every benchmarked system has in common: a
-- server `apr bench` starts (apr serve, llama-server) or one it is pointed
-- at by URL, reached through bench/client.lua, measured from launch to
-- first token once (cold start), and stopped at the end.
--
-- A system is a table:
--   id, name            "apr", "llama.cpp", "ollama"; what tables print
--   status, reason      "ready" | "skipped" | "failed", and why
--   protocol            "openai" | "ollama" (bench/client.lua)
--   host, port, base    where it answers
--   model               the model name its requests carry
--   options             extra fields of every request (Ollama's options)
--   proc, pid           the process when apr bench started it
--   version, settings   what it is and how it was configured (the report)
--   cold                cold start: launch (or load) to first token
local task = require "apr.bench.task"
local client = require "apr.bench.client"
local process = require "apr.bench.process"

local M = {}

local System = {}
System.__index = System
M.System = System

function M.new(id, name)
    return setmetatable({ id = id, name = name, status = "pending", settings = {}, protocol = "openai" }, System)
end

function System:skip(why)
    self.status, self.reason = "skipped", why
    return self
end

function System:fail(why)
    self.status, self.reason = "failed", why
    if self.proc then self.proc:kill() end
    return self
end

function System:endpoint()
    return string.format("http://%s:%d%s", self.host, self.port, self.base or "")
end

-- The request a run sends for a prompt (bench/prompts.lua's item: its
-- messages, and its text under the model's template for --api completions).
function System:request(item, cfg)
    return { model = self.model, messages = item.messages, prompt = item.text, max_tokens = cfg.max_tokens,
             seed = cfg.seed, options = self.options, keep_alive = self.keep_alive }
end

-- One streamed request; returns client.stream's record.
function System:stream(item, cfg)
    return task.await(function(cb)
        client.stream({ host = self.host, port = self.port, base = self.base, protocol = self.protocol,
                        api = cfg.api, req = self:request(item, cfg), timeout = cfg.request_timeout }, cb)
    end)
end

-- GET/POST path as JSON: the decoded answer, or nil and why.
function System:json(method, path, body, timeout)
    local value, r = task.await(function(cb)
        client.json_request({ host = self.host, port = self.port, method = method, path = (self.base or "") .. path,
                              json = body, timeout = timeout or 30 }, cb)
    end)
    if value == nil then
        return nil, r.error or string.format("%s %s: HTTP %s with no JSON body", method, path, tostring(r.status))
    end
    return value
end

-- What the device's used memory grew by across this system's launch (its
-- load and first request, the other servers idle meanwhile): the fallback
-- for its share of the memory where the driver's process list does not
-- show its process (a container with a PID namespace of its own).
function System:note_launch_memory(before, cfg)
    local after = cfg.device_memory and cfg.device_memory()
    if before and after then self.launch_memory = math.max(0, after - before) end
end

-- The device memory this system's server holds: bytes and where the
-- figure came from, or nil and why.
function System:gpu_memory(mon)
    if not mon.available then return nil, mon.reason end
    if not self.pid then return nil, "not started by apr bench: its process is unknown" end
    local b, why = mon:process_memory(self.pid)
    if b then return b, "NVML, process " .. self.pid end
    return nil, why
end

-- The first streamed request after launch: seconds from launch to its
-- first token, and the request's own figures.
function System:cold_request(cfg, t_launch)
    local s = self:stream(cfg.cold_prompt, cfg)
    if not s.ok then return nil, "the first request failed: " .. tostring(s.error) end
    local first = s.events[1]
    return {
        launch_to_first_token_s = first and (first - t_launch) or nil,
        first_request_ttft_s = first and (first - s.t0) or nil,
        first_request_e2e_s = s.t_end - s.t0,
        server_load_s = s.ollama and type(s.ollama.load_duration) == "number" and s.ollama.load_duration / 1e9 or nil,
    }
end

-- Starts exe with args (env added to the environment), waits for
-- /health, sends the cold-start request. On failure the system is marked
-- failed with the reason and the log's last lines.
function System:launch(exe, args, env, cfg)
    self.port = process.free_port()
    self.host, self.base = "127.0.0.1", ""
    for i, a in ipairs(args) do if a == "{port}" then args[i] = tostring(self.port) end end
    self.settings.command = { exe }
    for _, a in ipairs(args) do self.settings.command[#self.settings.command + 1] = a end
    local log = string.format("%s/%s.log", cfg.workdir, self.id:gsub("[^%w]", "_"))
    local before = cfg.device_memory and cfg.device_memory()
    local proc, err = process.spawn({ exe = exe, args = args, env = env, log = log })
    if not proc then return self:fail(err) end
    self.proc, self.pid, self.log = proc, proc.pid, log
    local ready_s, why = proc:wait_ready(self:endpoint(), cfg.start_timeout)
    if not ready_s then return self:fail(string.format("%s %s", self.name, why)) end
    local cold, cerr = self:cold_request(cfg, proc.t_spawn)
    if not cold then return self:fail(cerr) end
    cold.launch_to_ready_s = ready_s
    cold.what = "process launch to the first streamed token of the first request"
    self.cold = cold
    self:note_launch_memory(before, cfg)
    self.status = "ready"
    return self
end

-- Uses a server already running at url: checks /health. No cold start
-- (it was launched by someone else).
function System:attach(url, cfg)
    local u, err = client.parse_url(url)
    if not u then return self:fail(err) end
    self.host, self.port, self.base = u.host, u.port, u.base
    self.settings.url = url
    local r = task.await(function(cb)
        client.request({ host = u.host, port = u.port, path = u.base .. "/health", timeout = 10 }, cb)
    end)
    if r.error or r.status ~= 200 then
        return self:skip(string.format("no %s server answering at %s (%s)", self.name, url,
            r.error or ("GET /health: HTTP " .. tostring(r.status))))
    end
    self.cold = { what = "not measured: the server was already running (given by URL)" }
    self.status = "ready"
    return self
end

function System:stop()
    if self.proc and self.proc.exited and self.status == "ready" then
        -- It died on its own (its last requests failed; the exit may have
        -- been noticed only now).
        self.status = "failed"
        self.reason = string.format("the server exited during the benchmark (code %s):\n%s",
            tostring(self.proc.exit_code), self.proc:log_tail(10))
    end
    if self.proc then
        self.proc:stop(10)
        self.exit_code = self.proc.exit_code
    end
    if self.on_stop then self:on_stop() end
end

return M
