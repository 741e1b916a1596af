-- _term.lua — the terminal: is it one, how wide, progress lines (private).
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

function M.isatty(fd) return C.apr_term_isatty(fd) ~= 0 end

-- A progress line on stderr, redrawn in place, only when stderr is a
-- terminal (logs and pipes get nothing). `done`/`total` in any unit.
function M.progress(label)
    local enabled = M.isatty(2)
    local last = 0
    local p = {}
    function p.update(done, total)
        if not enabled then return end
        local now = os.clock()
        if now - last < 0.1 and done < total then return end
        last = now
        local pct = total > 0 and (100 * done / total) or 100
        io.stderr:write(string.format("\r%s %5.1f%%", label, pct))
        io.stderr:flush()
    end
    function p.finish()
        if enabled then io.stderr:write("\r\27[K") io.stderr:flush() end
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
