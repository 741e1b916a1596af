-- zram.lua — the server's view of the KV swap to a zram pool (apr serve
-- --zram, docs/zram.md): its /metrics series and its log lines.
--
-- The pool keeps KV blocks evicted from the device (those of preempted
-- requests and of cached prefixes) compressed in host memory; the swap
-- counts the blocks moved out and back. Counters sum the engines reloads
-- retired too, so they never go down.
local uv = require "luv"

local M = {}

-- Each engine's zram stats ({ pool =, swap = }), skipping those without.
local function each(engines)
    local list = {}
    for _, e in ipairs(engines()) do
        local z = e:zram_stats()
        if z then list[#list + 1] = z end
    end
    return list
end

local GAUGES = {
    { "apr_zram_pages", "pool", "pages", "Pages in the zram pool (one layer's keys or values of a KV block each)." },
    { "apr_zram_same_filled_pages", "pool", "same_pages",
      "Pages in the zram pool stored as one repeated word (no bytes)." },
    { "apr_zram_stored_bytes", "pool", "stored_bytes", "Compressed (or raw) bytes of the zram pool's pages." },
    { "apr_zram_host_bytes", "pool", "host_bytes", "Host memory the zram pool holds (slabs and entries)." },
    { "apr_zram_max_bytes", "pool", "max_bytes", "The zram pool's cap (--zram-ratio times the KV cache's bytes)." },
    { "apr_zram_compression_ratio", "pool", "ratio", "Page bytes held per host byte used by the zram pool." },
    { "apr_zram_compress_bytes_per_second", "pool", "compress_gbs",
      "Page bytes compressed per second of compression time, since start.", 1e9 },
    { "apr_zram_decompress_bytes_per_second", "pool", "decompress_gbs",
      "Page bytes decompressed per second of decompression time, since start.", 1e9 },
    { "apr_kv_swap_blocks_held", "swap", "blocks_held", "KV blocks the zram pool holds." },
}

local COUNTERS = {
    { "apr_kv_swap_blocks_out_total", "swap", "blocks_out", "KV blocks evicted from the device into the zram pool." },
    { "apr_kv_swap_blocks_in_total", "swap", "blocks_in",
      "KV blocks loaded back from the zram pool instead of recomputed." },
    { "apr_kv_swap_restore_failed_total", "swap", "restore_failed",
      "KV blocks the zram pool had lost when wanted (recomputed)." },
    { "apr_kv_swap_bytes_out_total", "swap", "bytes_out", "KV page bytes copied off the device into the pool." },
    { "apr_kv_swap_bytes_in_total", "swap", "bytes_in", "KV page bytes copied back onto the device." },
    { "apr_kv_swap_same_filled_pages_total", "swap", "pages_same",
      "KV pages swapped out as their repeated word alone (never copied)." },
    { "apr_zram_same_filled_hits_total", "pool", "same_hits", "Same-filled pages put into the zram pool." },
    { "apr_zram_evictions_total", "pool", "evictions", "Pages the zram pool evicted at its cap." },
}

-- metrics(reg, engines, retired): registers the series. engines() lists the
-- live engines; retired[key] holds the totals of retired ones (M.retire).
function M.metrics(reg, engines, retired)
    for _, g in ipairs(GAUGES) do
        local name, part, field, help, scale = g[1], g[2], g[3], g[4], g[5] or 1
        reg:gauge(name, help, {}, function(set)
            local list = each(engines)
            if #list == 0 then return end
            local v = 0
            for _, z in ipairs(list) do v = v + z[part][field] * scale end
            if field == "ratio" or field:match("_gbs$") then v = v / #list end
            set(v)
        end)
    end
    for _, c in ipairs(COUNTERS) do
        local name, part, field, help = c[1], c[2], c[3], c[4]
        reg:counter(name, help, {}, function(set)
            local v = retired[part .. "." .. field] or 0
            for _, z in ipairs(each(engines)) do v = v + z[part][field] end
            set(v)
        end)
    end
end

-- retire(retired, final): adds a retired engine's last zram stats.
function M.retire(retired, final)
    if not final then return end
    for _, c in ipairs(COUNTERS) do
        local key = c[2] .. "." .. c[3]
        retired[key] = (retired[key] or 0) + final[c[2]][c[3]]
    end
end

-- fields(z) -> log fields summing a pool and its swap.
function M.fields(z)
    local p, s = z.pool, z.swap
    return {
        { "blocks_out", s.blocks_out }, { "blocks_in", s.blocks_in }, { "blocks_held", s.blocks_held },
        { "restore_failed", s.restore_failed }, { "pages", p.pages }, { "same_filled", p.same_pages },
        { "host_mib", string.format("%.1f", p.host_bytes / 2 ^ 20) },
        { "max_mib", string.format("%.1f", p.max_bytes / 2 ^ 20) },
        { "ratio", string.format("%.2f", p.ratio) },
        { "compress_gbs", string.format("%.2f", p.compress_gbs) },
        { "decompress_gbs", string.format("%.2f", p.decompress_gbs) },
    }
end

-- start_log(server, every_s): a "zram" log line every every_s seconds in
-- which the swap moved blocks. Returns the timer (closed on shutdown).
function M.start_log(server, every_s)
    local last_moves = -1
    local timer = uv.new_timer()
    timer:start(every_s * 1000, every_s * 1000, function()
        local e = server:engine()
        local z = e and e:zram_stats()
        if not z then return end
        local moves = z.swap.blocks_out + z.swap.blocks_in + z.swap.restore_failed
        if moves == last_moves then return end
        last_moves = moves
        server:log("info", "zram", M.fields(z))
    end)
    timer:unref()  -- never keeps the loop alive by itself
    return timer
end

return M
