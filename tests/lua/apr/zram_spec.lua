-- zram_spec.lua — the Lua face of the page pool (runtime/zram/; its C
-- tests are tests/runtime/zram/), and a fuzz of put/get/free sequences
-- against a plain Lua table as the specification: whatever the sequence,
-- a get gives exactly the page put, or (for a freed or evicted page) nil
-- and a message, never other bytes; with a cap, the pages held are always
-- the most recently used ones and the host bytes stay under it.
local zram = require "apr.zram"
local ffi = require("apr.core").ffi

-- Pages of four kinds, made from a seed: zeros, one repeated 8-byte word,
-- compressible (each word one of four), random (does not shrink).
local function make_page(page_bytes, kind, seed)
    math.randomseed(seed)
    if kind == 0 then return string.rep("\0", page_bytes) end
    local function word()
        local t = {}
        for i = 1, 8 do t[i] = string.char(math.random(0, 255)) end
        return table.concat(t)
    end
    if kind == 1 then return string.rep(word(), page_bytes / 8) end
    local words = { word(), word(), word(), word() }
    local t = {}
    for i = 1, page_bytes / 8 do t[i] = kind == 2 and words[math.random(1, 4)] or word() end
    return table.concat(t)
end

describe("apr.zram", function()
    it("puts, gets and frees pages of every kind", function()
        for _, algo in ipairs { "lz4", "zstd" } do
            local pool = zram.pool { algo = algo }
            assert.equal(4096, pool.page_bytes)
            local pages, handles = {}, {}
            for i = 1, 12 do
                pages[i] = make_page(4096, i % 4, i)
                handles[i] = assert(pool:put(pages[i]))
            end
            for i = 12, 1, -1 do assert.equal(pages[i], pool:get(handles[i])) end
            -- into a buffer
            local buf = ffi.new("uint8_t[4096]")
            assert.is_true(pool:get(handles[3], buf))
            assert.equal(pages[3], ffi.string(buf, 4096))
            local s = pool:stats()
            assert.equal(algo, s.algo)
            assert.equal(12, s.pages)
            assert.equal(6, s.same_hits)
            assert.equal(3, s.raw_pages)
            assert.is_true(s.compress_gbs > 0 and s.decompress_gbs > 0)
            assert.is_true(pool:free(handles[1]))
            local v, err = pool:get(handles[1])
            assert.is_nil(v)
            assert.truthy(err:find("names no page", 1, true))
            assert.is_nil((pool:free(handles[1])))
            assert.is_false(pool:has(handles[1]))
            assert.is_true(pool:has(handles[2]))
        end
    end)

    it("raises for the caller's mistakes", function()
        assert.has_error(function() zram.pool { algo = "lzma" } end, 'zram.pool: algo must be "lz4" or "zstd", got lzma')
        assert.has_error(function() zram.pool { pages = 3 } end, "zram.pool: unknown option pages")
        assert.has_error(function() zram.pool { page_bytes = 100 } end)
        assert.has_error(function() zram.pool { max_bytes = -1 } end)
        local pool = zram.pool { page_bytes = 64 }
        assert.has_error(function() pool:put(string.rep("x", 63)) end,
            "zram put: the page has 63 bytes, the pool's pages 64")
        assert.has_error(function() pool:put(42) end)
        assert.has_error(function() pool:get("1") end)
        assert.has_error(function() pool:free(nil) end)
        -- handles that name nothing are not mistakes: nil and a message
        for _, h in ipairs { 0, 1, 2 ^ 52, 12345.5 } do
            local v, err = pool:get(h)
            assert.is_nil(v)
            assert.is_string(err)
        end
    end)

    it("classifies pages on any number of threads", function()
        local page_bytes, n = 4096, 64
        local parts = {}
        local want = 0
        for i = 1, n do
            local kind = i % 3 == 0 and 0 or i % 3 == 1 and 1 or 2
            parts[i] = make_page(page_bytes, kind, i)
            if kind < 2 then want = want + 1 end
        end
        local bytes = table.concat(parts)
        for _, threads in ipairs { 1, 0 } do
            local n_same, same = zram.classify(bytes, n, page_bytes, threads)
            assert.equal(want, n_same)
            for i = 1, n do assert.equal(i % 3 ~= 2 and 1 or 0, same[i - 1]) end
        end
        local dst = ffi.new("uint8_t[?]", #bytes)
        assert.is_true(zram.copy_pages(dst, bytes, n, page_bytes))
        assert.equal(bytes, ffi.string(dst, #bytes))
    end)

    -- The fuzz: random operations, the table `model` as the specification.
    local function fuzz(opts, seed, steps)
        local pool = zram.pool(opts)
        local pb = pool.page_bytes
        local model = {}      -- handle -> { page =, used = }
        local live = {}       -- handles in the model, for picking one
        local gone = {}       -- handles freed or evicted: must name nothing
        local clock = 0
        local rng_state = seed
        local function rnd(n)  -- a small LCG of our own: make_page reseeds math.random
            rng_state = (rng_state * 1103515245 + 12345) % 2147483648
            return math.floor(rng_state / 65536) % n  -- the high bits: the low ones of an LCG cycle
        end
        local function forget(h)
            model[h] = nil
            for i, x in ipairs(live) do if x == h then table.remove(live, i) break end end
            gone[#gone + 1] = h
        end
        for _ = 1, steps do
            clock = clock + 1
            local op = rnd(10)
            if op < 4 or #live == 0 then
                local page = make_page(pb, rnd(4), rnd(1000000))
                local h, err = pool:put(page)
                if h then
                    assert.is_nil(model[h])
                    model[h] = { page = page, used = clock }
                    live[#live + 1] = h
                else
                    -- only with a cap, and only when nothing else is left to evict
                    assert.truthy(opts.max_bytes and err:find("cap", 1, true))
                end
            elseif op < 8 then
                local h = live[rnd(#live) + 1]
                local got, err = pool:get(h)
                if got then
                    assert.equal(model[h].page, got)
                    model[h].used = clock
                else
                    assert.truthy(opts.max_bytes, err)  -- without a cap nothing disappears
                    assert.truthy(err:find("names no page", 1, true))
                    forget(h)
                end
            elseif op < 9 then
                local h = live[rnd(#live) + 1]
                local ok, err = pool:free(h)
                if not ok then assert.truthy(opts.max_bytes, err) end
                forget(h)
            else
                -- something already gone, or never given out
                local h = #gone > 0 and gone[rnd(#gone) + 1] or rnd(1000) + 1e6
                assert.is_nil((pool:get(h)))
                assert.is_nil((pool:free(h)))
            end
            local s = pool:stats()
            if opts.max_bytes then
                assert.is_true(s.host_bytes <= opts.max_bytes)
                -- LRU: the pages held are the most recently used ones
                local oldest_held, newest_lost = math.huge, -1
                for h, m in pairs(model) do
                    if pool:has(h) then oldest_held = math.min(oldest_held, m.used)
                    else newest_lost = math.max(newest_lost, m.used) end
                end
                assert.is_true(newest_lost < oldest_held)
            else
                assert.equal(#live, s.pages)
            end
        end
        -- the end: every page the pool still has reads back right
        for h, m in pairs(model) do
            local got = pool:get(h)
            if got then assert.equal(m.page, got) else assert.truthy(opts.max_bytes) end
        end
        return pool:stats()
    end

    it("matches a plain table over random put/get/free sequences", function()
        for seed = 1, 3 do
            fuzz({ algo = "lz4" }, seed, 400)
            fuzz({ algo = "zstd", page_bytes = 4352 }, seed, 200)
            fuzz({ algo = "lz4", page_bytes = 64 }, seed, 400)
        end
    end)

    it("matches a plain table under a cap, evicting the least recently used", function()
        local total_evictions = 0
        for seed = 1, 3 do
            local s = fuzz({ algo = "lz4", max_bytes = 48 * 1024 }, seed, 400)
            total_evictions = total_evictions + s.evictions
            fuzz({ algo = "zstd", page_bytes = 256, max_bytes = 4000 }, seed, 400)
        end
        assert.is_true(total_evictions > 0)
    end)
end)
