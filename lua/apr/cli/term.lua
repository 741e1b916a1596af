-- cli/term.lua — the terminal: is it one, how wide, progress lines.
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

function M.isatty(fd) return C.apr_term_isatty(fd) ~= 0 end

-- A progress line on stderr, redrawn in place, only when stderr is a
-- terminal (logs and pipes get nothing). `done`/`total` in any unit.
-- opts.lines: where stderr is not a terminal, a plain line at every tenth
-- instead of nothing, once the job has run for 2 s (long jobs' logs show
-- they move; a short one, or one failing at once, prints only its result).
-- opts.rate(done, seconds) -> text shown after the percentage ("1.2 GB/s").
function M.progress(label, opts)
    opts = opts or {}
    local tty = M.isatty(2)
    local enabled = tty or opts.lines
    local last, tenth = 0, 0
    local started = require("luv").hrtime()
    local p = {}
    local function extra(done)
        if not opts.rate then return "" end
        local secs = (require("luv").hrtime() - started) / 1e9
        return "  " .. opts.rate(done, secs)
    end
    function p.update(done, total)
        if not enabled then return end
        local pct = total > 0 and (100 * done / total) or 100
        if not tty then
            local t = math.floor(pct / 10)
            if t > tenth and (require("luv").hrtime() - started) / 1e9 >= 2 then
                tenth = t
                io.stderr:write(string.format("%s: %d%%%s\n", label, t * 10, extra(done)))
                io.stderr:flush()
            end
            return
        end
        local now = os.clock()
        if now - last < 0.1 and done < total then return end
        last = now
        local bar = ""
        if opts.rate then
            local filled = math.floor(pct / 5 + 0.5)
            bar = " [" .. string.rep("#", filled) .. string.rep(".", 20 - filled) .. "]"
        end
        io.stderr:write(string.format("\r%s%s %5.1f%%%s", label, bar, pct, extra(done)))
        io.stderr:flush()
    end
    function p.finish()
        if tty then io.stderr:write("\r\27[K") io.stderr:flush() end
    end
    return p
end

-- readline(prompt) -> line or nil at end of input. Line editing and history
-- when GNU readline is installed, plain reads otherwise.
function M.readline(prompt)
    local s = C.apr_term_readline(prompt)
    if s == nil then return nil end
    local line = ffi.string(s)
    C.apr_free(s)
    return line
end

function M.add_history(line) C.apr_term_add_history(line) end
function M.load_history(path) C.apr_term_load_history(path) end
function M.save_history(path) C.apr_term_save_history(path) end

return M
