-- hf_client_spec.lua — apr and the official client share one cache: the
-- huggingface_hub package (PyPI, in .cache/pyenv) downloads from the test
-- hub (so the hub speaks its protocol), finds with local_files_only=True
-- what apr pulled (so apr lays the cache out as it does), and apr finds
-- what it downloaded, offline.
local cjson = require "cjson"
local hub_helper = require "tests.lua.apr.hub.hub_helper"
local h = require "tests.lua.helpers"

local PYTHON = ".cache/pyenv/bin/python"
local CLIENT = "tests/lua/apr/hub/hf_client.py"
local Q4 = "tests/fixtures/models/tiny-q4_k_m.gguf"
local Q8 = "tests/fixtures/models/tiny-q8_0.gguf"

local function has_hf()
    return os.execute(PYTHON .. " -c 'import huggingface_hub' >/dev/null 2>&1") == 0
end

describe("huggingface_hub and apr", function()
    local hub
    setup(function()
        if not has_hf() then return end
        hub = hub_helper.start({ page_size = 3, repos = { ["bartowski/Tiny-GGUF"] = { files = {
            ["Tiny-Q4_K_M.gguf"] = Q4, ["Tiny-Q8_0.gguf"] = Q8, ["README.md"] = "README.md",
            ["split/Tiny-Q6_K-00001-of-00002.gguf"] = { bytes = 4000, seed = 1 },
            ["split/Tiny-Q6_K-00002-of-00002.gguf"] = { bytes = 3000, seed = 2 },
        } } } })
    end)
    teardown(function() if hub then hub.stop() end end)

    local function client(mode, file, env)
        local r = hub_helper.run(string.format("%s %s %s %s bartowski/Tiny-GGUF %s", hub.env(env), PYTHON, CLIENT, mode, file))
        local out = r.out:match("([^\n]+)\n*$")
        local ok, v = pcall(cjson.decode, out or "")
        assert(ok and type(v) == "table", "the client failed:\n" .. r.out .. r.err)
        return v
    end

    it("the client downloads from the test hub, and apr then finds the file without the network", function()
        if not hub then return pending("huggingface_hub is not installed (make deps)") end
        local py = client("download", "Tiny-Q8_0.gguf")
        assert.equal(hub_helper.sha256(Q8), py.sha256)
        assert.truthy(py.path:find(hub.cache .. "/models--bartowski--Tiny-GGUF/snapshots/", 1, true), py.path)
        hub.reset()
        local r = hub.apr("info bartowski/Tiny-GGUF:Q8_0", "HF_HUB_OFFLINE=1")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("SHA256: " .. py.sha256, 1, true), r.out)
        assert.equal(0, #hub.stats().requests)
        -- Online, apr sees the blob is there and downloads nothing.
        r = hub.apr("pull bartowski/Tiny-GGUF:Q8_0")
        assert.equal(0, r.code, r.err)
        assert.equal(py.path .. "\n", r.out)
        assert.truthy(r.err:find("already in the cache", 1, true), r.err)
        assert.is_nil(hub.stats().bytes["bartowski/Tiny-GGUF/Tiny-Q8_0.gguf"])
        -- A plain (non-LFS) file the client fetched from the hub itself.
        py = client("download", "README.md")
        assert.equal(hub_helper.sha256("README.md"), py.sha256)
    end)

    it("the client finds, offline, what apr pulled, and its cache scan reports no problem", function()
        if not hub then return pending("huggingface_hub is not installed (make deps)") end
        local r = hub.apr("pull bartowski/Tiny-GGUF:Q4_K_M --quiet")
        assert.equal(0, r.code, r.err)
        r = hub.apr("pull bartowski/Tiny-GGUF:Q6_K --quiet")
        assert.equal(0, r.code, r.err)
        local offline = "HF_HUB_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:9"
        local py = client("cached", "Tiny-Q4_K_M.gguf", offline)
        assert.equal(hub_helper.sha256(Q4), py.sha256)
        py = client("cached", "split/Tiny-Q6_K-00002-of-00002.gguf", offline)
        assert.equal(hub_helper.sha256(hub.root .. "/bartowski/Tiny-GGUF/split/Tiny-Q6_K-00002-of-00002.gguf"), py.sha256)
        assert.same({}, py.warnings)
        local repo = py.repos["bartowski/Tiny-GGUF"]
        assert.same({ "main" }, repo.refs)
        for _, f in ipairs({ "Tiny-Q4_K_M.gguf", "Tiny-Q6_K-00001-of-00002.gguf", "Tiny-Q6_K-00002-of-00002.gguf" }) do
            local found = false
            for _, g in ipairs(repo.files) do found = found or g == f end
            assert.is_true(found, f .. " not in " .. table.concat(repo.files, ", "))
        end
    end)
end)
