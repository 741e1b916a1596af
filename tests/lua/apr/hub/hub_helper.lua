-- hub_helper.lua — the test hub (test_hub.py) for the specs: builds its
-- repositories in a temporary folder, starts it on 127.0.0.1, sets faults,
-- reads what it served, stops it. Not a spec (no _spec suffix).
local cjson = require "cjson"
local h = require "tests.lua.helpers"

local M = {}

local HUB = "tests/lua/apr/hub/test_hub.py"

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    local ok = p:close()
    return out, ok
end
M.sh = sh

-- Writes n seeded pseudo-random bytes to path (Python's Mersenne Twister:
-- the same bytes on every run).
function M.random_file(path, n, seed)
    os.execute("mkdir -p '" .. path:match("^(.*)/") .. "'")
    local _, ok = sh(string.format("python3 -c \"import random; open('%s','wb').write(random.Random(%d).randbytes(%d))\"",
        path, seed or 1, n))
    assert(ok, "cannot write " .. path)
end

function M.sha256(path)
    return (sh("sha256sum '" .. path .. "'"):match("^(%x+)"))
end

-- run(cmd) -> { code, out, err } of a shell command.
function M.run(cmd)
    local out, err = os.tmpname(), os.tmpname()
    local p = assert(io.popen(string.format("%s </dev/null >%s 2>%s; echo $?", cmd, out, err)))
    local code = tonumber(p:read("*a"))
    p:close()
    local r = { code = code, out = h.read_file(out), err = h.read_file(err) }
    os.remove(out)
    os.remove(err)
    return r
end

-- start({ repos = { ["org/name"] = { files = { [path] = source or {bytes=n, seed=s} }, config = {...} } },
--         page_size = n, token = t }) -> hub
function M.start(spec)
    local dir = h.tmpdir()
    local root = dir .. "/root"
    for repo, r in pairs(spec.repos) do
        local base = root .. "/" .. repo
        os.execute("mkdir -p '" .. base .. "'")
        for path, src in pairs(r.files or {}) do
            local dst = base .. "/" .. path
            os.execute("mkdir -p '" .. dst:match("^(.*)/") .. "'")
            if type(src) == "table" then
                M.random_file(dst, src.bytes, src.seed)
            else
                assert(os.execute(string.format("cp '%s' '%s'", src, dst)) == 0, "cannot copy " .. src)
            end
        end
        if r.config then
            local f = assert(io.open(base .. "/.hub.json", "wb"))
            f:write(cjson.encode(r.config))
            f:close()
        end
    end
    local port_file = dir .. "/port"
    local cmd = string.format("python3 %s --root '%s' --port-file '%s' --page-size %d --token %s >'%s/hub.log' 2>&1 & echo $!",
        HUB, root, port_file, spec.page_size or 1000, spec.token or "hf_test_token", dir)
    local pid = tonumber(sh(cmd):match("(%d+)"))
    local port
    for _ = 1, 300 do
        local f = io.open(port_file, "rb")
        if f then
            port = tonumber(f:read("*a"))
            f:close()
            if port then break end
        end
        os.execute("sleep 0.05")
    end
    assert(port, "the test hub did not start:\n" .. h.read_file(dir .. "/hub.log"))
    local hub = { dir = dir, root = root, pid = pid, port = port, url = "http://127.0.0.1:" .. port,
                  cache = dir .. "/hf" }

    local function control(method, path, body)
        local data = ""
        if body then
            local f = assert(io.open(dir .. "/control.json", "wb"))
            f:write(body)
            f:close()
            data = string.format(" -H 'Content-Type: application/json' --data-binary @'%s/control.json'", dir)
        end
        return (sh(string.format("curl -s -X %s %s%s%s", method, hub.url, path, data)))
    end
    function hub.faults(list)
        control("POST", "/_hub/faults", cjson.encode(list))
    end
    function hub.reset() control("POST", "/_hub/reset") end
    function hub.stats() return cjson.decode(control("GET", "/_hub/stats")) end
    function hub.stop()
        os.execute("kill " .. pid .. " 2>/dev/null")
        h.rmtree(dir)
    end
    -- The environment apr runs in: this hub, its own cache, no token.
    function hub.env(extra)
        return string.format("env -u HF_TOKEN -u HF_HOME -u HF_HUB_OFFLINE HF_ENDPOINT=%s HF_HUB_CACHE='%s' %s",
            hub.url, hub.cache, extra or "")
    end
    -- apr with that environment: { code, out, err }.
    function hub.apr(args, extra_env)
        return M.run(hub.env(extra_env) .. " " .. h.apr_bin .. " " .. args)
    end
    return hub
end

return M
