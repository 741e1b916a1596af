-- fs/xdg.lua — where apr keeps files between runs, after the XDG Base
-- Directory spec: histories in $XDG_STATE_HOME/apr (default
-- ~/.local/state/apr), caches in $XDG_CACHE_HOME/apr (default ~/.cache/apr).
local M = {}

-- The apr folder in the base directory $env, else in $HOME/fallback; nil
-- when neither variable is set.
local function apr_dir(env, fallback)
    local base = os.getenv(env)
    if not base or base == "" then
        local home = os.getenv("HOME")
        if not home or home == "" then return nil end
        base = home .. "/" .. fallback
    end
    return base .. "/apr"
end

function M.state_dir() return apr_dir("XDG_STATE_HOME", ".local/state") end
function M.cache_dir() return apr_dir("XDG_CACHE_HOME", ".cache") end

-- Creates a folder and its parents. Failing is silent: writing the file
-- meant for the folder reports it.
function M.mkdir(dir)
    os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
end

-- Creates the folder a file is to go in.
function M.mkdir_for(path)
    local dir = path:match("^(.*)/[^/]*$")
    if dir and dir ~= "" then M.mkdir(dir) end
end

return M
