-- checksum_spec.lua — SHA256 of files and the sidecar cache.
local h = require "tests.lua.helpers"
local apr = require "apr"
local checksum = require "apr.checksum"

local Q8 = "tests/fixtures/models/tiny-q8_0.gguf"
local Q8_SHA = "27c0cb833101a1fa14651a147d5e8ca3a3ecda18f3753419fd6fd3f700f3ea2f"

local function sh(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("*a")
    p:close()
    return out
end

describe("SHA256 sidecars", function()
    local dir, file
    before_each(function()
        dir = h.tmpdir()
        file = dir .. "/m.gguf"
        sh("cp " .. Q8 .. " " .. file)
    end)
    after_each(function() h.rmtree(dir) end)

    it("hashes in chunks and matches sha256sum", function()
        local saved = checksum.CHUNK
        checksum.CHUNK = 100003  -- many uneven pieces
        local hex = checksum.compute(assert(apr.open(file)))
        checksum.CHUNK = saved
        assert.equal(Q8_SHA, hex)
        assert.equal(Q8_SHA, sh("sha256sum " .. file):match("^%x+"))
    end)

    it("caches the digest beside the file, keyed by size and mtime", function()
        local f = assert(apr.open(file))
        assert.is_nil(checksum.recorded(file))
        assert.equal(Q8_SHA, f:sha256())
        local side = h.read_file(file .. ".sha256")
        assert.truthy(side:find("^" .. Q8_SHA .. "  m.gguf\n# apr: size=2436320 mtime=%d+%.%d+\n$"), side)
        -- a forged fresh sidecar is believed: the cache is what answers
        sh("sed -i 's/^" .. Q8_SHA .. "/" .. ("a"):rep(64) .. "/' " .. file .. ".sha256")
        assert.equal(("a"):rep(64), f:sha256())
        -- once the file's mtime changes the sidecar is stale: recomputed and rewritten
        sh("touch -d '2001-01-01' " .. file)
        local hex, fresh = checksum.recorded(file)
        assert.equal(("a"):rep(64), hex)
        assert.is_false(fresh)
        assert.equal(Q8_SHA, f:sha256())
        assert.truthy(h.read_file(file .. ".sha256"):find("^" .. Q8_SHA))
    end)

    it("falls back to $XDG_CACHE_HOME when the file's folder cannot take the sidecar", function()
        -- a directory where the sidecar would go blocks it even for root
        sh("mkdir " .. file .. ".sha256")
        local r = io.popen("cd " .. h.root .. " && XDG_CACHE_HOME=" .. dir .. "/cache " .. h.apr_bin ..
            " info " .. file .. " 2>&1; echo rc=$?")
        local out = r:read("*a")
        r:close()
        assert.truthy(out:find("SHA256: " .. Q8_SHA, 1, true), out)
        assert.truthy(out:find("rc=0", 1, true), out)
        local cached = sh("cat " .. dir .. "/cache/apr/sha256/*.sha256")
        assert.truthy(cached:find("^" .. Q8_SHA .. "  m.gguf\n"), cached)
    end)

    -- Issue 16: io.open of a sidecar that is a FIFO waited for a writer
    -- forever. It is no digest: ignored, the file hashed, the FIFO left be.
    it("ignores a sidecar that is a FIFO instead of waiting on it", function()
        sh("mkfifo " .. file .. ".sha256")
        local r = h.apr_timeout(10, "info " .. file, nil, "XDG_CACHE_HOME=" .. dir .. "/cache")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("SHA256: " .. Q8_SHA, 1, true), r.out)
        r = h.apr_timeout(10, "verify --checksum " .. Q8_SHA .. " " .. file, nil, "XDG_CACHE_HOME=" .. dir .. "/cache")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("matches the given digest", 1, true), r.out)
        -- in this process last, once the commands showed it returns: no
        -- digest from the FIFO (the default cache has none for this path)
        assert.is_nil(checksum.recorded(file))
    end)
end)
