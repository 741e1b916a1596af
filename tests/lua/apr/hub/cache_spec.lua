-- cache_spec.lua — where the hub cache is (the variables huggingface_hub
-- reads, in its order) and the links apr makes in it.
local hub_helper = require "tests.lua.apr.hub.hub_helper"
local h = require "tests.lua.helpers"

local function dir_with(env)
    local script = os.tmpname()
    local f = assert(io.open(script, "wb"))
    f:write("print(require('apr.hub.cache').dir())\n")
    f:close()
    local r = hub_helper.run("env -u HF_HUB_CACHE -u HUGGINGFACE_HUB_CACHE -u HF_HOME -u XDG_CACHE_HOME " .. env ..
        " " .. h.apr_bin .. " run " .. script)
    os.remove(script)
    return (r.out:gsub("\n$", ""))
end

describe("hub/cache", function()
    it("is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub", function()
        assert.equal("/x/hub", dir_with("HF_HUB_CACHE=/x/hub HF_HOME=/y"))
        assert.equal("/y/hub", dir_with("HF_HOME=/y XDG_CACHE_HOME=/z"))
        assert.equal("/z/huggingface/hub", dir_with("XDG_CACHE_HOME=/z HOME=/h"))
        assert.equal("/h/.cache/huggingface/hub", dir_with("HOME=/h"))
    end)

    it("refuses paths that would leave the cache", function()
        local cache = require "apr.hub.cache"
        for _, ok in ipairs({ "a.gguf", "Q8_0/a-00001-of-00002.gguf", "refs/pr/1", "main" }) do
            assert.is_true(cache.safe_relative(ok), ok)
        end
        for _, bad in ipairs({ "", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/", "a\\b", "a\0b" }) do
            assert.is_false(cache.safe_relative(bad), bad)
        end
    end)

    it("links snapshots to blobs relatively, at any depth, and records refs without a newline", function()
        local d = h.tmpdir()
        local script = d .. "/t.lua"
        local f = assert(io.open(script, "wb"))
        f:write([[
local c = require "apr.hub.cache"
c.mkdir(c.repo_dir("o/r") .. "/blobs")
io.open(c.blob("o/r", "abc"), "wb"):write("x")
print(assert(c.link("o/r", "c0ffee", "a/b/m.gguf", "abc")))
assert(c.write_ref("o/r", "main", "c0ffee"))
print(c.read_ref("o/r", "main"), #c.snapshot_files("o/r", "c0ffee"), c.snapshot_files("o/r", "c0ffee")[1])
]])
        f:close()
        local r = hub_helper.run("HF_HUB_CACHE=" .. d .. "/hub " .. h.apr_bin .. " run " .. script)
        assert.equal(0, r.code, r.err)
        assert.equal("../../../../blobs/abc",
            (hub_helper.sh("readlink " .. d .. "/hub/models--o--r/snapshots/c0ffee/a/b/m.gguf"):gsub("\n$", "")))
        assert.truthy(r.out:find("c0ffee\t1\ta/b/m.gguf", 1, true), r.out)
        assert.equal("c0ffee", h.read_file(d .. "/hub/models--o--r/refs/main"))
        h.rmtree(d)
    end)
end)
