-- download_spec.lua — the downloader (runtime/net/download.c through
-- lua/apr/download.lua and apr pull) against the test hub's faults: a
-- connection dropped at byte N, ranges ignored, the file changed mid-way,
-- corrupted bytes, 403/429/500/503, a stall, a trickle, a process killed at
-- random points and resumed, a full disk.
local hub_helper = require "tests.lua.apr.hub.hub_helper"
local h = require "tests.lua.helpers"

local MiB = 1024 * 1024
local REPO = "t/Faults-GGUF"
local FILE = "a-Q4_K_M.gguf"
local SIZE = 6 * MiB
local hub, SHA, ALT_SHA

local function file_exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

-- A cache of its own for each test, so nothing is "already there".
local function fresh_cache()
    local d = h.tmpdir()
    return d, "HF_HUB_CACHE=" .. d
end

local function pull(env, extra)
    return hub.apr("pull " .. REPO .. ":Q4_K_M --connections 4 --chunk-size 1M " .. (extra or ""), env)
end

local function served() return hub.stats().bytes[REPO .. "/" .. FILE] or 0 end

local function blob_dir(cache) return cache .. "/models--t--Faults-GGUF/blobs" end

-- The blob dir holds only finished blobs and nothing half-written.
local function leftovers(cache)
    local out = hub_helper.sh("ls -A '" .. blob_dir(cache) .. "' 2>/dev/null")
    local list = {}
    for name in out:gmatch("[^\n]+") do
        if name:find("incomplete", 1, true) then list[#list + 1] = name end
    end
    return list
end

local function now() return require("luv").hrtime() * 1e-9 end

describe("downloads", function()
    setup(function()
        hub = hub_helper.start({ repos = { [REPO] = { files = { [FILE] = { bytes = SIZE, seed = 11 } } } } })
        SHA = hub_helper.sha256(hub.root .. "/" .. REPO .. "/" .. FILE)
        hub_helper.random_file(hub.dir .. "/alt.gguf", SIZE, 12)
        ALT_SHA = hub_helper.sha256(hub.dir .. "/alt.gguf")
    end)
    teardown(function() hub.stop() end)
    before_each(function() hub.reset() end)

    it("resumes a connection dropped at byte N without fetching a byte twice", function()
        local cache, env = fresh_cache()
        hub.faults({ { kind = "drop", at = 3 * MiB + 12345 } })
        local r = pull(env)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("retrying", 1, true), r.err)
        assert.equal(SHA, hub_helper.sha256((r.out:gsub("\n$", ""))))
        assert.equal(SIZE, served())
        h.rmtree(cache)
    end)

    it("starts over on one connection when the server ignores ranges", function()
        local cache, env = fresh_cache()
        hub.faults({ { kind = "ignore_range", times = -1 } })
        local r = pull(env)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("ignores byte ranges", 1, true), r.err)
        assert.equal(SHA, hub_helper.sha256((r.out:gsub("\n$", ""))))
        h.rmtree(cache)
    end)

    it("leaves no file when the digest does not match, and names the file and both digests", function()
        local cache, env = fresh_cache()
        hub.faults({ { kind = "corrupt", at = 4 * MiB + 7, times = -1 } })
        local r = pull(env)
        assert.equal(1, r.code)
        local got = r.err:match("got (%x+)")
        assert.truthy(r.err:find(FILE, 1, true), r.err)
        assert.truthy(r.err:find("expected " .. SHA, 1, true), r.err)
        assert.truthy(got and #got == 64 and got ~= SHA, r.err)
        assert.equal("", r.out)
        assert.falsy(file_exists(blob_dir(cache) .. "/" .. SHA))
        assert.same({}, leftovers(cache))
        assert.equal("", hub_helper.sh("find '" .. cache .. "' -path '*snapshots*' -type l"))
        h.rmtree(cache)
    end)

    it("waits as Retry-After says on 429, retries 5xx, re-resolves an expired CDN link", function()
        local cache, env = fresh_cache()
        hub.faults({
            { kind = "status", code = 429, on = "cdn", retry_after = "1", times = 1 },
            { kind = "status", code = 500, on = "tree", times = 1 },
            { kind = "status", code = 503, on = "resolve", times = 1 },
        })
        local t0 = now()
        local r = pull(env)
        assert.equal(0, r.code, r.err)
        assert.truthy(now() - t0 >= 1.0)
        assert.truthy(r.err:find("HTTP 429; retrying in 1.0s", 1, true), r.err)
        h.rmtree(cache)
        cache, env = fresh_cache()
        hub.faults({ { kind = "status", code = 403, on = "cdn", times = 1 } })
        r = pull(env)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("asking the hub again", 1, true), r.err)
        assert.equal(SHA, hub_helper.sha256((r.out:gsub("\n$", ""))))
        h.rmtree(cache)
    end)

    it("gives up after --retries, keeping what it has for the next run", function()
        local cache, env = fresh_cache()
        -- Every request for the third chunk is cut before its first byte.
        hub.faults({ { kind = "drop", at = 2 * MiB, times = -1 } })
        local r = pull(env, "--retries 1")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("gave up after 2 attempts", 1, true), r.err)
        assert.truthy(r.err:find("run the same command again to resume", 1, true), r.err)
        assert.truthy(file_exists(blob_dir(cache) .. "/" .. SHA .. ".incomplete.resume"))
        hub.faults({})
        r = pull(env)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("resumed at", 1, true), r.err)
        assert.equal(SHA, hub_helper.sha256((r.out:gsub("\n$", ""))))
        assert.equal(SIZE, served())   -- not a byte fetched twice
        assert.same({}, leftovers(cache))
        h.rmtree(cache)
    end)

    it("retries a connection that stalls (--timeout)", function()
        local cache, env = fresh_cache()
        hub.faults({ { kind = "stall", at = 2 * MiB + 100, seconds = 30 } })
        local t0 = now()
        local r = pull(env, "--timeout 1")
        assert.equal(0, r.code, r.err)
        assert.truthy(now() - t0 < 15, "took " .. (now() - t0))
        assert.truthy(r.err:find("too slow", 1, true), r.err)
        assert.equal(SHA, hub_helper.sha256((r.out:gsub("\n$", ""))))
        h.rmtree(cache)
    end)

    it("reports a slow trickle in plain lines when stderr is not a terminal", function()
        local cache, env = fresh_cache()
        hub.faults({ { kind = "rate", bps = 3 * MiB, times = -1 } })
        local r = pull(env, "--connections 1")
        assert.equal(0, r.code, r.err)
        local lines = 0
        for pct in r.err:gmatch("(%d+)%%  ") do lines = lines + 1 end
        assert.truthy(lines >= 3, r.err)
        assert.falsy(r.err:find("\r", 1, true))
        h.rmtree(cache)
    end)

    it("restarts when the file changes on the hub mid-download, and gets the new one", function()
        local cache, env = fresh_cache()
        hub.faults({ { kind = "rate", bps = 2 * MiB, times = -1 },
                     { kind = "swap", after = MiB, with = hub.dir .. "/alt.gguf" } })
        local r = pull(env, "--connections 2")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("changed", 1, true), r.err)
        assert.equal(ALT_SHA, hub_helper.sha256((r.out:gsub("\n$", ""))))
        assert.same({}, leftovers(cache))
        h.rmtree(cache)
        hub.stop()
        hub = hub_helper.start({ repos = { [REPO] = { files = { [FILE] = { bytes = SIZE, seed = 11 } } } } })
        hub_helper.random_file(hub.dir .. "/alt.gguf", SIZE, 12)
    end)

    it("resumes a download killed at 10 random points, fetching little more than the file", function()
        -- 4 connections of 1 MiB chunks at 1 MiB/s each: the file takes 4 s
        -- of transfer; each of 10 runs is killed (SIGKILL) at a random
        -- moment within its first half second, then one runs to the end.
        local BIG = 16 * MiB
        hub.stop()
        local root_files = { ["big-Q8_0.gguf"] = { bytes = BIG, seed = 21 }, [FILE] = { bytes = SIZE, seed = 11 } }
        hub = hub_helper.start({ repos = { [REPO] = { files = root_files } } })
        hub_helper.random_file(hub.dir .. "/alt.gguf", SIZE, 12)
        local want = hub_helper.sha256(hub.root .. "/" .. REPO .. "/big-Q8_0.gguf")
        hub.faults({ { kind = "rate", bps = MiB, times = -1 } })
        local cache, env = fresh_cache()
        math.randomseed(20240611)
        local cmd = hub.env(env) .. " timeout -s KILL %.2f " .. h.apr_bin ..
            " pull " .. REPO .. ":Q8_0 --connections 4 --chunk-size 1M --quiet"
        local killed = 0
        for _ = 1, 10 do
            local r = hub_helper.run(string.format(cmd, 0.2 + 0.3 * math.random()))
            if r.code == 137 then killed = killed + 1 end
        end
        local r = hub_helper.run(string.format(cmd, 60))
        assert.equal(0, r.code, r.err)
        local path = r.out:gsub("\n$", "")
        assert.equal(want, hub_helper.sha256(path))
        assert.truthy(killed >= 8, "only " .. killed .. " runs were killed before the end")
        local sent = hub.stats().bytes[REPO .. "/big-Q8_0.gguf"]
        local bound = BIG + killed * 4 * MiB   -- one chunk per connection per kill
        assert.truthy(sent <= bound, string.format("served %d bytes for a %d-byte file over %d kills (bound %d)",
            sent, BIG, killed, bound))
        print(string.format("\n    kill/resume: %d kills, %.1f MiB served for a %.1f MiB file (+%.1f%%)", killed,
            sent / MiB, BIG / MiB, 100 * (sent - BIG) / BIG))
        assert.same({}, leftovers(cache))
        h.rmtree(cache)
    end)

    -- A full disk: a 2 MiB tmpfs where one can be mounted (root with
    -- CAP_SYS_ADMIN), else the file-size limit (ulimit -f, RLIMIT_FSIZE),
    -- under which the kernel fails the reservation with EFBIG.
    local function small_disk()
        local d = h.tmpdir()
        if os.execute("mount -t tmpfs -o size=2m tmpfs '" .. d .. "' 2>/dev/null") == 0 then
            return d, "tmpfs", function() os.execute("umount '" .. d .. "'"); h.rmtree(d) end
        end
        return d, "RLIMIT_FSIZE", function() h.rmtree(d) end
    end

    it("fails cleanly on a full disk", function()
        local d, how, cleanup = small_disk()
        local cmd = hub.env("HF_HUB_CACHE=" .. d) .. " " .. h.apr_bin .. " pull " .. REPO .. ":Q4_K_M"
        if how == "RLIMIT_FSIZE" then cmd = "sh -c 'ulimit -f 2048; exec " .. cmd:gsub("'", "'\\''") .. "'" end
        local r = hub_helper.run(cmd)
        print("\n    full disk simulated with " .. how)
        assert.equal(1, r.code, r.err)
        assert.truthy(r.err:find("cannot reserve " .. SIZE .. " bytes", 1, true), r.err)
        assert.truthy(r.err:find(how == "tmpfs" and "No space left on device" or "File too large", 1, true), r.err)
        assert.equal("", r.out)
        assert.same({}, leftovers(d))
        assert.falsy(file_exists(blob_dir(d) .. "/" .. SHA))
        cleanup()
    end)
end)
