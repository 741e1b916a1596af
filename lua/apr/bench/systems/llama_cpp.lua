-- bench/systems/llama_cpp.lua — llama.cpp's llama-server: found on PATH,
-- at a given path (the binary or its folder), or already running at a URL.
-- Started on the same GGUF with the same context, parallel slots, threads
-- and flash attention as apr; its /props confirm what it took.
local uv = require "luv"
local server = require "apr.bench.server"
local process = require "apr.bench.process"

local M = {}

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The executable a --baseline llama-cpp[=SPEC] names, or nil and why.
function M.find(spec)
    if not spec or spec == "" then
        local exe = process.which("llama-server")
        if exe then return exe end
        return nil, "llama-server not found on PATH (give --baseline llama-cpp=PATH or =URL)"
    end
    local st = uv.fs_stat(spec)
    if not st then return nil, "llama-server not found: no such file or folder " .. spec end
    if st.type == "directory" then
        for _, rel in ipairs({ "llama-server", "bin/llama-server", "build/bin/llama-server" }) do
            local p = spec:gsub("/+$", "") .. "/" .. rel
            if uv.fs_access(p, "X") and uv.fs_stat(p).type == "file" then return p end
        end
        return nil, "no llama-server in " .. spec .. " (nor in its bin/ or build/bin/)"
    end
    if not uv.fs_access(spec, "X") then return nil, spec .. " is not executable" end
    return spec
end

-- `llama-server --version`: "version: 7138 (34af94c)" and "built with ...".
local function version_of(exe, env)
    local p = io.popen(string.format("LD_LIBRARY_PATH=%s %s --version 2>&1", sh_quote(env.LD_LIBRARY_PATH), sh_quote(exe)))
    local text = p and p:read("*a") or ""
    if p then p:close() end
    local v = text:match("version: ([^\n]+)")
    local built = text:match("built with ([^\n]+)")
    if not v then return nil, text:sub(1, 300) end
    return "llama.cpp " .. v .. (built and (", built with " .. built) or "")
end

-- What the server says it runs with (GET /props): per-slot context, slots.
local function read_props(sys)
    local props = sys:json("GET", "/props")
    if type(props) ~= "table" then return end
    local dgs = props.default_generation_settings
    sys.settings.server_slot_ctx = type(dgs) == "table" and dgs.n_ctx or nil
    sys.settings.server_slots = props.total_slots
    sys.settings.build_info = props.build_info
end

function M.prepare(spec, cfg)
    local sys = server.new("llama.cpp", "llama.cpp")
    if spec and spec:match("^https?://") then
        sys:attach(spec, cfg)
        if sys.status == "ready" then
            read_props(sys)
            sys.version = sys.settings.build_info and ("llama.cpp " .. sys.settings.build_info) or "llama.cpp (version not reported)"
        end
        return sys
    end
    local exe, why = M.find(spec)
    if not exe then return sys:skip(why) end
    local dir = exe:match("^(.*)/[^/]+$") or "."
    local old = os.getenv("LD_LIBRARY_PATH")
    local env = { LD_LIBRARY_PATH = dir .. (old and old ~= "" and (":" .. old) or "") }
    local version, verr = version_of(exe, env)
    if not version then return sys:fail("`" .. exe .. " --version` failed: " .. verr) end
    sys.version = version
    sys.settings = { ctx = cfg.ctx, parallel = cfg.parallel, threads = cfg.threads,
                     flash_attn = cfg.flash_attn and "on" or "off", gpu_layers = cfg.gpu and 999 or 0,
                     prompt_cache = "off per request (cache_prompt: false)" }
    local args = { "-m", cfg.model, "--host", "127.0.0.1", "--port", "{port}", "-c", tostring(cfg.ctx),
                   "-np", tostring(cfg.parallel), "-fa", cfg.flash_attn and "on" or "off",
                   "-ngl", cfg.gpu and "999" or "0", "-t", tostring(cfg.threads), "-tb", tostring(cfg.threads) }
    sys:launch(exe, args, env, cfg)
    if sys.status == "ready" then
        read_props(sys)
        local per_slot = math.floor(cfg.ctx / cfg.parallel)
        if sys.settings.server_slot_ctx and sys.settings.server_slot_ctx ~= per_slot then
            sys.warning = string.format("llama-server gives each slot %s tokens of context, apr %d",
                tostring(sys.settings.server_slot_ctx), per_slot)
        end
    end
    return sys
end

return M
