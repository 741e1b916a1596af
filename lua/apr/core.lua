-- core.lua — the FFI boundary: the C runtime's functions and its error codes.
--
-- Every other module reaches C through `core.C` and turns a failed status
-- into Lua's convention with `core.failure`: nil plus the message for
-- runtime failures (a missing file, a corrupt tensor), an error raised at the
-- caller for caller mistakes (APR_ERR_INVALID), as lua-resty-core does.
local ffi = require "apr.ffi"

local M = {}

-- The runtime is linked into the `apr` executable and exported from it. A
-- plain LuaJIT (an editor's test runner, say) loads the shared library.
local function runtime()
    if pcall(function() return ffi.C.apr_version end) then return ffi.C end
    local home = rawget(_G, "APR_HOME") or os.getenv("APR_HOME") or "."
    return ffi.load(home .. "/build/libapr.so")
end

local C = runtime()
M.C = C
M.ffi = ffi

local APR_ERR_INVALID = tonumber(C.APR_ERR_INVALID)

-- The message of the last failure on this thread.
function M.last_error()
    return ffi.string(C.apr_last_error())
end

-- failure(status [, level]) -> nil, message; raises for caller mistakes.
function M.failure(status, level)
    local msg = M.last_error()
    if msg == "" then msg = ffi.string(C.apr_status_str(status)) end
    if status == APR_ERR_INVALID then error(msg, (level or 2) + 1) end
    return nil, msg
end

-- check(status) raises on any failure: for code paths where a failure is a
-- bug or must stop the script (the CLI commands turn it into exit 1).
function M.check(status, level)
    if status ~= 0 then
        local _, msg = M.failure(status, (level or 2) + 1)
        error(msg, (level or 2))
    end
end

-- Out-parameter boxes, made once (no cdata allocated per call).
M.size_box = ffi.new("size_t[1]")
M.int64_box = ffi.new("int64_t[1]")
M.double_box = ffi.new("double[1]")
M.ptr_box = ffi.new("void *[1]")

return M
