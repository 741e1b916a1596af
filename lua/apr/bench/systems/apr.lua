-- bench/systems/apr.lua — apr itself: `apr serve` started from this very
-- binary on the model, or an apr server already running (--apr URL).
local core = require "apr.core"
local server = require "apr.bench.server"
local C, ffi = core.C, core.ffi

local M = {}

function M.version()
    return {
        version = ffi.string(C.apr_version()), git_revision = ffi.string(C.apr_git_revision()),
        cuda_compiled = C.apr_cuda_compiled() ~= 0, compiler = ffi.string(C.apr_compiler()),
    }
end

-- prepare(cfg) -> a system (ready, or failed/skipped with the reason).
function M.prepare(cfg)
    local sys = server.new("apr", "apr")
    local v = M.version()
    sys.version = string.format("apr %s (git %s)", v.version, v.git_revision)
    sys.version_detail = v
    if cfg.apr_url then
        sys.version = "apr at " .. cfg.apr_url .. " (version not reported by the server)"
        sys.version_detail = nil
        return sys:attach(cfg.apr_url, cfg)
    end
    local exe = (rawget(_G, "APR_HOME") or os.getenv("APR_HOME") or ".") .. "/apr"
    local device = cfg.gpu and "cuda" or "cpu"
    sys.settings = { ctx = cfg.ctx, parallel = cfg.parallel, device = device, threads = cfg.threads,
                     flash_attn = "always (apr's attention kernels are fused)",
                     prompt_cache = "off (--no-prefix-cache), as llama-server's per request" }
    local args = { "serve", cfg.model, "--host", "127.0.0.1", "--port", "{port}", "--ctx", tostring(cfg.ctx),
                   "--parallel", tostring(cfg.parallel), "--device", device, "--threads", tostring(cfg.threads),
                   "--queue", "1024", "--log-level", "warn",
                   -- every system computes every prompt: llama-server is asked to
                   -- with cache_prompt false, apr's prefix cache is off
                   "--no-prefix-cache" }
    return sys:launch(exe, args, nil, cfg)
end

return M
