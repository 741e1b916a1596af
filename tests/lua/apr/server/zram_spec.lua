-- zram_spec.lua — `apr serve --zram` on the tiny fixture model: 12
-- concurrent requests through a KV cache too small for them (preemption,
-- evictions) get the greedy answers each gets alone from a server without
-- the pool; the swap's series are in /metrics (and promtool accepts them),
-- the pool in the logs; bad option combinations are usage errors.
local json = require "apr.json"
local client = require "tests.lua.apr.server.client"
local serve = require "tests.lua.apr.server.serve_helper"
local h = require "tests.lua.helpers"

local function metric(text, series)
    return tonumber(text:match("\n" .. series .. " ([^\n]+)"))
end

local function body(i)
    return json.encode({ prompt = string.rep("Story number " .. i .. " begins here. ", 4), max_tokens = 64,
                         temperature = 0 })
end

local function answers(port, n)
    local exs = {}
    for i = 1, n do exs[i] = { port = port, send = client.raw("POST", "/v1/completions", body(i)) } end
    client.run(exs, 120)
    local out = {}
    for i = 1, n do
        local r = exs[i].responses[1]
        assert.truthy(r, "request " .. i .. " got no answer")
        assert.equal(200, r.status, r.body)
        out[i] = json.decode(r.body).choices[1].text
    end
    return out
end

describe("apr serve --zram", function()
    it("swaps evicted blocks to the pool without changing an answer, and reports it", function()
        -- 256 slots: 8 blocks and 3 of slack for 4 sequences of ~80 tokens
        local plain = serve.start("--parallel 4 --ctx 256")
        local want = {}
        for i = 1, 12 do
            local r = assert(client.request(plain.port, "POST", "/v1/completions", body(i), nil, 60))
            want[i] = json.decode(r.body).choices[1].text
        end
        plain:stop()

        local s = serve.start("--parallel 4 --ctx 256 --zram --zram-algo zstd --zram-ratio 4")
        local got = answers(s.port, 12)
        assert.same(want, got)
        local m = assert(client.request(s.port, "GET", "/metrics")).body
        assert.is_true(metric(m, "apr_kv_cache_preemptions_total") > 0, m)
        assert.is_true(metric(m, "apr_kv_swap_blocks_out_total") > 0, m)
        assert.is_true(metric(m, "apr_kv_swap_blocks_in_total") > 0, m)
        assert.equal(0, metric(m, "apr_kv_swap_restore_failed_total"))
        assert.is_true(metric(m, "apr_zram_pages") > 0)
        assert.is_true(metric(m, "apr_zram_host_bytes") <= metric(m, "apr_zram_max_bytes"))
        assert.is_true(metric(m, "apr_zram_compression_ratio") > 0)
        for _, name in ipairs { "apr_zram_same_filled_pages", "apr_zram_stored_bytes", "apr_kv_swap_blocks_held",
                                "apr_kv_swap_bytes_out_total", "apr_kv_swap_bytes_in_total",
                                "apr_zram_same_filled_hits_total", "apr_zram_evictions_total",
                                "apr_zram_compress_bytes_per_second", "apr_zram_decompress_bytes_per_second",
                                "apr_kv_swap_same_filled_pages_total" } do
            assert.is_number(metric(m, name), name)
        end
        local has_promtool = os.execute("command -v promtool >/dev/null 2>&1")
        if has_promtool == 0 or has_promtool == true then
            local path = os.tmpname()
            local f = assert(io.open(path, "wb"))
            f:write(m)
            f:close()
            local p = assert(io.popen("promtool check metrics < " .. path .. " 2>&1; echo rc=$?"))
            local out = p:read("*a")
            p:close()
            os.remove(path)
            assert.truthy(out:find("rc=0", 1, true), out)
        end
        assert.equal(0, s:stop())
        local log = s.final_log or ""
        assert.truthy(log:find("zram pool", 1, true), log)
        assert.truthy(log:find("algo=zstd", 1, true), log)
        assert.truthy(log:find("zram at exit", 1, true), log)
        assert.truthy(log:match("blocks_out=[1-9]"), log)
    end)

    it("has no zram series without --zram", function()
        local s = serve.start("--parallel 1 --ctx 256")
        local m = assert(client.request(s.port, "GET", "/metrics")).body
        s:stop()
        assert.falsy(m:find("apr_zram", 1, true))
        assert.falsy(m:find("apr_kv_swap", 1, true))
    end)

    it("refuses --zram without the prefix cache, and a bad ratio or algorithm", function()
        local model = serve.MODEL
        for _, args in ipairs { "--zram --no-prefix-cache", "--zram-ratio 0", "--zram-ratio x",
                                "--zram-algo lzma" } do
            local r = h.apr("serve " .. model .. " --port 0 " .. args)
            assert.equal(2, r.code, args .. ": " .. r.err)
            assert.truthy(r.err:find("zram", 1, true), r.err)
        end
    end)
end)
