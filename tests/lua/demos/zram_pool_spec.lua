-- zram_pool_spec.lua — demos/zram_pool.lua runs and shows what it
-- promises: every page of a file back as it went in, and the pool's figures.
local h = require "tests.lua.helpers"

describe("demos/zram_pool.lua", function()
    it("puts a file's pages, checks them and reports the pool", function()
        for _, algo in ipairs { "lz4", "zstd" } do
            local r = h.apr("run demos/zram_pool.lua tests/fixtures/models/tiny-q8_0.gguf " .. algo)
            assert.equal(0, r.code, r.err)
            assert.truthy(r.out:find("595 pages of 4096 bytes through " .. algo, 1, true), r.out)
            assert.truthy(r.out:find("held 595 (checked), evicted 0", 1, true), r.out)
            assert.truthy(r.out:match("ratio %d+%.%d%d"), r.out)
        end
    end)

    it("evicts the oldest pages under a cap", function()
        local r = h.apr("run demos/zram_pool.lua tests/fixtures/models/tiny-q8_0.gguf lz4 500000")
        assert.equal(0, r.code, r.err)
        local held, evicted = r.out:match("held (%d+) %(checked%), evicted (%d+)")
        assert.equal(595, tonumber(held) + tonumber(evicted))
        assert.is_true(tonumber(evicted) > 400, r.out)
    end)

    it("names a missing file", function()
        local r = h.apr("run demos/zram_pool.lua /no/such/file")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("/no/such/file", 1, true))
    end)
end)
