-- helpers.lua — shared by the specs: run the apr binary, read fixtures.
local M = {}

M.root = os.getenv("PWD")
M.apr_bin = os.getenv("APR_BIN") or "./apr"

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end
M.read_file = read_file

-- exists(path): whether path can be opened for reading.
function M.exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

-- apr(args [, stdin]) -> { code = exit code, out = stdout, err = stderr }.
-- args is a shell fragment; the test writes it, so quoting is its own.
function M.apr(args, stdin)
    local out, err = os.tmpname(), os.tmpname()
    local input = "/dev/null"
    if stdin then
        input = os.tmpname()
        local f = assert(io.open(input, "wb"))
        f:write(stdin)
        f:close()
    end
    local cmd = string.format("%s %s <%s >%s 2>%s; echo $?", M.apr_bin, args, input, out, err)
    local p = assert(io.popen(cmd))
    local code = tonumber(p:read("*a"))
    p:close()
    local r = { code = code, out = read_file(out), err = read_file(err) }
    os.remove(out) os.remove(err)
    if stdin then os.remove(input) end
    return r
end

-- apr_timeout(seconds, args [, stdin [, env]]): M.apr, killed after
-- `seconds` (exit 124), for commands that must not hang; env ("A=1 B=2")
-- is set for the command.
function M.apr_timeout(seconds, args, stdin, env)
    local bin = M.apr_bin
    M.apr_bin = string.format("%s timeout -k 2 %d %s", env and ("env " .. env) or "", seconds, bin)
    local ok, r = pcall(M.apr, args, stdin)
    M.apr_bin = bin
    assert(ok, r)
    return r
end

-- A fresh temporary directory, removed by the caller with M.rmtree.
function M.tmpdir()
    local p = assert(io.popen("mktemp -d"))
    local d = p:read("*l")
    p:close()
    return d
end

function M.rmtree(d)
    assert(d:match("^/tmp/"), "refusing to remove " .. d)
    os.execute("rm -rf '" .. d .. "'")
end

return M
