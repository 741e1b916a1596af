-- apr — the Lua API of the apr runtime. `require "apr"` gives this table.
--
-- It only gathers the modules that implement each part (docs/lua-api.md
-- describes them); heavy parts such as the server load on first use.
local core = require "apr.core"
local ffi = core.ffi
local C = core.C

local apr = {}

apr.version = ffi.string(C.apr_version())
apr.git_revision = ffi.string(C.apr_git_revision())

-- True once Ctrl+C was pressed; long loops in scripts should poll it.
function apr.interrupted() return C.apr_interrupted() ~= 0 end
function apr.clear_interrupt() C.apr_interrupt_clear() end

-- apr.load(path, opts) -> a model (lua/apr/model.lua), or nil and a message.
-- path may be a Hugging Face reference, ORG/REPO:QUANT (apr.model_path).
function apr.load(path, opts)
    local resolved, err = require("apr.model_path").resolve(path)
    if err then return nil, err end
    return require("apr.model").load(resolved, opts)
end

-- apr.open(path) -> a GGUF file (lua/apr/file.lua), or nil and a message.
function apr.open(path)
    local resolved, err = require("apr.model_path").resolve(path)
    if err then return nil, err end
    return require("apr.file").open(resolved)
end

-- Submodules load when first touched: `apr.server` costs nothing until used.
local lazy = {
    tensor = "apr.tensor",
    tokenizer = "apr.tokenizer",
    model = "apr.model",
    sampler = "apr.sampler",
    zram = "apr.zram",
}
setmetatable(apr, {
    __index = function(t, k)
        local mod = lazy[k]
        if mod then
            local v = require(mod)
            rawset(t, k, v)
            return v
        end
    end,
})

return apr
