-- model_path.lua — what a command's MODEL argument names: a file, or a
-- Hugging Face reference (ORG/REPO:QUANT, see hub/ref.lua) resolved from
-- the hub cache without the network. Every command that takes a model
-- (info, inspect, verify, pass, chat, serve) goes through resolve(), so a
-- reference works wherever a path does.
local uv = require "luv"

local M = {}

-- Model files are named by their extension; an argument ending in one is
-- a path even when it is missing (the error then says so, not "not in
-- the cache").
local FILE_EXT = { gguf = true, apr = true, bin = true, safetensors = true }

-- reference(arg) -> the parsed reference when arg is one and no file
-- of that name exists, else nil.
function M.reference(arg)
    if type(arg) ~= "string" or uv.fs_stat(arg) then return nil end
    local ext = arg:match("%.(%w+)$")
    if not arg:find(":", 1, true) and ext and FILE_EXT[ext:lower()] then return nil end
    return require("apr.hub.ref").parse(arg)
end

-- resolve(arg) -> path, or nil and a message. A path is returned as it is
-- (opening it reports its own errors); a reference becomes the absolute
-- path of its file in the hub cache.
function M.resolve(arg)
    local ref = M.reference(arg)
    if not ref then return arg end
    local path, err = require("apr.hub.ref").find(ref)
    if not path then return nil, err end
    return path
end

return M
