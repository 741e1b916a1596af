-- download.lua — one file over HTTP(S) through the runtime's downloader
-- (runtime/net/download.c): parallel ranged connections, resume, retries,
-- SHA-256. The C thread posts events to a queue whose eventfd a luv poll
-- handle watches, as the server watches the engine's tokens; nothing calls
-- back into Lua from C.
--
--   local d = download.start({ url = u, path = p, size = n, sha256 = hex }, function(ev)
--       -- ev.kind: "progress" | "retry" | "restart" | "done" | "failed"
--   end)
--   local final = download.run({ ... }, on_event)   -- blocks in a luv loop
--
-- Lower-level users: the hub client (lua/apr/hub/pull.lua) and the specs.
local uv = require "luv"
local core = require "apr.core"
local ffi, C = core.ffi, core.C

local M = {}

local KINDS = {
    [tonumber(C.APR_DOWNLOAD_PROGRESS)] = "progress",
    [tonumber(C.APR_DOWNLOAD_RETRY)] = "retry",
    [tonumber(C.APR_DOWNLOAD_RESTART)] = "restart",
    [tonumber(C.APR_DOWNLOAD_DONE)] = "done",
    [tonumber(C.APR_DOWNLOAD_FAILED)] = "failed",
}
local REASONS = {
    [tonumber(C.APR_DOWNLOAD_CANCELLED)] = "cancelled",
    [tonumber(C.APR_DOWNLOAD_NETWORK)] = "network",
    [tonumber(C.APR_DOWNLOAD_HTTP)] = "http",
    [tonumber(C.APR_DOWNLOAD_CHANGED)] = "changed",
    [tonumber(C.APR_DOWNLOAD_DIGEST)] = "digest",
    [tonumber(C.APR_DOWNLOAD_DISK)] = "disk",
}

local N_EVENTS = 64
local events = ffi.new("apr_download_event[?]", N_EVENTS)
local handle_box = ffi.new("apr_download *[1]")

local function to_table(ev)
    local t = {
        kind = KINDS[tonumber(ev.kind)],
        done = tonumber(ev.done), total = tonumber(ev.total), resumed = tonumber(ev.resumed),
        received = tonumber(ev.received), hashed = tonumber(ev.hashed), active = tonumber(ev.active),
    }
    if t.kind == "retry" or t.kind == "failed" then
        t.http_status = tonumber(ev.http_status)
        t.message = ffi.string(ev.message)
    end
    if t.kind == "retry" then t.wait = tonumber(ev.wait) end
    if t.kind == "failed" then
        t.reason = REASONS[tonumber(ev.reason)] or "unknown"
        t.status = tonumber(ev.status)
    end
    if t.kind == "done" then t.sha256 = ffi.string(ev.sha256) end
    return t
end

-- start(opts, on_event) -> download object, or nil and a message.
-- opts: url, path, size (bytes), sha256 (hex, optional), headers (list of
-- "Name: value"), connections, chunk (bytes), retries, stall (s),
-- connect_timeout (s), progress_interval (s), max_retry_wait (s).
-- on_event(ev) runs on the luv loop for each event; the last has kind
-- "done" or "failed".
function M.start(opts, on_event)
    local p = ffi.new("apr_download_params")
    C.apr_download_params_default(p)
    p.url = opts.url
    p.path = opts.path
    p.size = opts.size
    local headers = opts.headers and table.concat(opts.headers, "\n") or nil
    p.headers = headers
    p.sha256 = opts.sha256
    if opts.connections then p.connections = opts.connections end
    if opts.chunk then p.chunk_bytes = opts.chunk end
    if opts.retries then p.max_retries = opts.retries end
    if opts.stall then p.stall_seconds = opts.stall end
    if opts.connect_timeout then p.connect_seconds = opts.connect_timeout end
    if opts.progress_interval then p.progress_seconds = opts.progress_interval end
    if opts.max_retry_wait then p.max_retry_wait = opts.max_retry_wait end
    local status = C.apr_download_start(p, handle_box)
    if status ~= 0 then return core.failure(status) end
    local self = { handle = ffi.gc(handle_box[0], C.apr_download_free), finished = false }
    self.poll = uv.new_poll(C.apr_download_fd(self.handle))
    self.poll:start("r", function()
        while not self.finished do
            local n = C.apr_download_poll(self.handle, events, N_EVENTS)
            for i = 0, n - 1 do
                local ev = to_table(events[i])
                if ev.kind == "done" or ev.kind == "failed" then
                    self.finished = true
                    self.result = ev
                    self.poll:stop()
                    self.poll:close()
                end
                on_event(ev)
            end
            if n < N_EVENTS then break end
        end
    end)
    function self.cancel() C.apr_download_cancel(self.handle) end
    return self
end

-- run(opts, on_event) -> the final event (kind "done" or "failed"), or
-- nil and a message when it cannot start. Runs the luv loop until the
-- download ends; Ctrl+C cancels it (reason "cancelled", resumable).
function M.run(opts, on_event)
    local d, err = M.start(opts, on_event or function() end)
    if not d then return nil, err end
    local watch = uv.new_timer()
    watch:start(100, 100, function()
        if C.apr_interrupted() ~= 0 then d.cancel() end
    end)
    while not d.finished do uv.run("once") end
    watch:stop()
    watch:close()
    return d.result
end

return M
