-- hub/progress.lua — what `apr pull` shows while files download, on stderr.
--
-- On a terminal: one line per file, redrawn in place (bytes, percent, rate,
-- ETA) and left behind with its outcome when the file is done. Elsewhere
-- (a log, CI): a plain line each time another tenth of the file is in, at
-- most every 30 s otherwise, and one when it is done. Retries and restarts
-- are lines of their own either way. quiet: nothing.
local uv = require "luv"
local fmt_size = require("apr.model_info").format_size

local M = {}

local function clock() return uv.hrtime() * 1e-9 end

local function fmt_time(s)
    if not s or s ~= s or s == math.huge or s < 0 then return "--" end
    s = math.floor(s + 0.5)
    if s >= 3600 then return string.format("%dh%02dm", math.floor(s / 3600), math.floor(s % 3600 / 60)) end
    if s >= 60 then return string.format("%dm%02ds", math.floor(s / 60), s % 60) end
    return string.format("%ds", s)
end
M.format_time = fmt_time

local function fmt_rate(r)
    if not r or r <= 0 then return "--/s" end
    return fmt_size(r) .. "/s"
end

local function short(name, n)
    name = name:match("([^/]+)$") or name
    if #name <= n then return name end
    return name:sub(1, n - 3) .. "..."
end

-- new({ quiet = bool, tty = bool }) -> ui
function M.new(opts)
    local ui = { quiet = opts.quiet, tty = opts.tty }
    local cur   -- the file being downloaded

    local function line(text)
        if ui.quiet then return end
        if ui.tty and cur and cur.drawn then io.stderr:write("\r\27[K") end
        io.stderr:write(text, "\n")
        io.stderr:flush()
        if cur then cur.drawn = false end
    end
    ui.line = line

    local function status_text(ev)
        local pct = ev.total > 0 and 100 * ev.done / ev.total or 100
        local eta = cur.rate and cur.rate > 0 and (ev.total - ev.done) / cur.rate or nil
        return string.format("%s  %s / %s  %3d%%  %s  ETA %s", short(cur.name, 48), fmt_size(ev.done),
            fmt_size(ev.total), math.floor(pct), fmt_rate(cur.rate), fmt_time(eta))
    end

    -- A file starts (resumed: bytes already on disk).
    function ui.start(name, total, index, count)
        cur = { name = name, total = total, t0 = clock(), last_t = clock(), last_rx = 0, next_tenth = 1,
                last_line = clock(), index = index, count = count }
        if ui.quiet then return end
        local of = count and count > 1 and string.format(" (%d of %d)", index, count) or ""
        if not ui.tty then line(string.format("pull: %s%s: %s", cur.name, of, fmt_size(total))) end
    end

    -- Any event of the download (lua/apr/download.lua).
    function ui.event(ev)
        if not cur then return end
        local t = clock()
        if ev.kind == "progress" then
            local dt = t - cur.last_t
            if dt >= 0.25 then
                local r = (ev.received - cur.last_rx) / dt
                cur.rate = cur.rate and (0.7 * cur.rate + 0.3 * r) or r
                cur.last_t, cur.last_rx = t, ev.received
            end
            if ui.quiet then return end
            if ui.tty then
                if t - (cur.drawn_at or 0) >= 0.1 then
                    io.stderr:write("\r\27[K", status_text(ev))
                    io.stderr:flush()
                    cur.drawn, cur.drawn_at = true, t
                end
            else
                local tenth = ev.total > 0 and math.floor(10 * ev.done / ev.total) or 10
                if (tenth >= cur.next_tenth and tenth < 10) or t - cur.last_line >= 30 then
                    cur.next_tenth = tenth + 1
                    cur.last_line = t
                    line("pull: " .. status_text(ev))
                end
            end
        elseif ev.kind == "retry" then
            line(string.format("pull: %s: %s; retrying in %.1fs", short(cur.name, 48), ev.message, ev.wait))
        elseif ev.kind == "restart" then
            line(string.format("pull: %s: the server ignores byte ranges; starting over on one connection",
                short(cur.name, 48)))
        end
    end

    -- A file the cache already holds.
    function ui.cached(name, total)
        cur = nil
        line(string.format("pull: %s: %s, already in the cache", short(name, 48), fmt_size(total)))
    end

    -- The file is done: info = { bytes = received, seconds, resumed, cached, verified }.
    function ui.finish(info)
        if not cur then return end
        local name = short(cur.name, 48)
        do
            local s = math.max(info.seconds, 1e-6)
            local resumed = info.resumed > 0 and string.format(", resumed at %s", fmt_size(info.resumed)) or ""
            line(string.format("pull: %s: %s in %s (%s)%s, SHA-256 %s", name, fmt_size(cur.total),
                fmt_time(info.seconds), fmt_rate(info.bytes / s), resumed,
                info.verified and "verified" or "computed (the hub gives none for this file)"))
        end
        cur = nil
    end

    -- The file failed: clears the progress line.
    function ui.abort()
        if ui.tty and cur and cur.drawn and not ui.quiet then
            io.stderr:write("\r\27[K")
            io.stderr:flush()
        end
        cur = nil
    end

    return ui
end

return M
