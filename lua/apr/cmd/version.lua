-- apr version: what this build is.
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

M.spec = {
    usage = "apr version [--json]",
    summary = "Show the version, git revision, CUDA support and compiler.",
    options = { { "json", help = "print one JSON object" } },
    examples = { "apr version", "apr version --json" },
}

function M.run(opts)
    local info = {
        version = ffi.string(C.apr_version()),
        git_revision = ffi.string(C.apr_git_revision()),
        cuda = C.apr_cuda_compiled() ~= 0,
        compiler = ffi.string(C.apr_compiler()),
        luajit = jit.version,
    }
    if opts.json then
        io.stdout:write(require("cjson").encode(info), "\n")
    else
        io.stdout:write(string.format("apr %s (git %s)\nCUDA: %s\ncompiler: %s\n%s\n",
            info.version, info.git_revision, info.cuda and "on" or "off", info.compiler, info.luajit))
    end
    return 0
end

return M
