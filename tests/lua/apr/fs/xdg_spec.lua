-- xdg_spec.lua — where histories and caches go, and folders made for them.
local h = require "tests.lua.helpers"

-- The state and cache folders apr computes under the given environment.
local function dirs(env)
    local dir = h.tmpdir()
    local script = dir .. "/dirs.lua"
    local f = assert(io.open(script, "wb"))
    f:write('local xdg = require "apr.fs.xdg"\n',
            'io.write(tostring(xdg.state_dir()), "\\n", tostring(xdg.cache_dir()), "\\n")\n')
    f:close()
    local p = assert(io.popen(string.format("env -i %s %s run %s", env, h.apr_bin, script)))
    local state, cache = p:read("*l"), p:read("*l")
    p:close()
    h.rmtree(dir)
    return state, cache
end

describe("apr.fs.xdg", function()
    it("follows XDG_STATE_HOME and XDG_CACHE_HOME", function()
        assert.same({ "/s/apr", "/c/apr" }, { dirs("HOME=/home/u XDG_STATE_HOME=/s XDG_CACHE_HOME=/c") })
    end)

    it("falls back to HOME, and to nothing without it", function()
        assert.same({ "/home/u/.local/state/apr", "/home/u/.cache/apr" }, { dirs("HOME=/home/u XDG_STATE_HOME=") })
        assert.same({ "nil", "nil" }, { dirs("HOME=") })
    end)

    it("makes a file's folder and its parents, quotes and all", function()
        local xdg = require "apr.fs.xdg"
        local dir = h.tmpdir()
        local path = dir .. "/it's/a b/file.json"
        xdg.mkdir_for(path)
        local f = assert(io.open(path, "wb"))
        f:close()
        h.rmtree(dir)
    end)
end)
