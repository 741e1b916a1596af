-- zram.lua — compressed page pools (runtime/zram/, docs/zram.md) as Lua
-- objects.
--
--   local pool = apr.zram.pool{ algo = "lz4", max_bytes = 64 * 2^20 }
--   local h = pool:put(page)          -- a string of page_bytes bytes, or a pointer to them
--   local bytes = pool:get(h)         -- the page again (or nil and why: dropped, evicted, corrupt)
--   pool:get(h, buf)                  -- into a buffer of page_bytes bytes instead
--   pool:free(h)                      -- lets go of it
--   pool:stats().ratio                -- pages, same-filled hits, bytes, ratio, GB/s
--
-- A handle is a plain number. Using a handle whose page is gone is a
-- runtime failure (nil and the message); a page of the wrong size or a
-- handle that is no number is the caller's mistake and raises.
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

local Pool = {}
Pool.__index = Pool

local pool_box = ffi.new("apr_zram *[1]")
local handle_box = ffi.new("uint64_t[1]")
local stats_box = ffi.new("apr_zram_stats")

local ALGOS = { lz4 = C.APR_ZRAM_LZ4, zstd = C.APR_ZRAM_ZSTD }
local OPTIONS = { algo = true, level = true, page_bytes = true, max_bytes = true }

local function raise(status)
    local _, msg = core.failure(status, 3)
    error(msg, 3)
end

-- pool(opts) -> a pool. opts: algo ("lz4", the default, or "zstd"), level
-- (LZ4 acceleration or ZSTD level; 0 = the default), page_bytes (4096),
-- max_bytes (a cap on the pool's host memory; 0 or nil = none). Raises for
-- an unknown option or a bad value, naming it.
function M.pool(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("zram.pool takes a table of options", 2) end
    for k in pairs(opts) do
        if not OPTIONS[k] then error("zram.pool: unknown option " .. tostring(k), 2) end
    end
    local p = ffi.new("apr_zram_params")
    C.apr_zram_params_default(p)
    if opts.algo ~= nil then
        local a = ALGOS[opts.algo]
        if not a then error("zram.pool: algo must be \"lz4\" or \"zstd\", got " .. tostring(opts.algo), 2) end
        p.algo = a
    end
    for _, k in ipairs { "level", "page_bytes", "max_bytes" } do
        local v = opts[k]
        if v ~= nil then
            if type(v) ~= "number" or v < 0 or v ~= math.floor(v) then
                error(string.format("zram.pool: %s must be a whole number >= 0, got %s", k, tostring(v)), 2)
            end
            p[k] = v
        end
    end
    local status = C.apr_zram_new(p, pool_box)
    if status ~= 0 then raise(status) end
    local page_bytes = tonumber(p.page_bytes)
    return setmetatable({
        handle = ffi.gc(pool_box[0], C.apr_zram_free),
        page_bytes = page_bytes,
        algo = ffi.string(C.apr_zram_algo_name(p.algo)),
        buf = ffi.new("uint8_t[?]", page_bytes),  -- get's output, copied out at once
    }, Pool)
end

local function check_handle(h)
    if type(h) ~= "number" then error("zram: a handle is a number, got " .. type(h), 3) end
end

-- put(page) -> handle, or nil and the message (the page does not fit
-- under max_bytes even alone). page: a string of exactly page_bytes bytes,
-- or a pointer to page_bytes bytes.
function Pool:put(page)
    if type(page) == "string" then
        if #page ~= self.page_bytes then
            error(string.format("zram put: the page has %d bytes, the pool's pages %d", #page, self.page_bytes), 2)
        end
    elseif type(page) ~= "cdata" then
        error("zram put: the page must be a string or a pointer, got " .. type(page), 2)
    end
    local status = C.apr_zram_put(self.handle, page, handle_box)
    if status ~= 0 then return core.failure(status) end
    return tonumber(handle_box[0])
end

-- get(h [, buf]) -> the page as a string (or true when written to buf, a
-- pointer to page_bytes bytes), or nil and the message: the handle names
-- no page (freed, or evicted under the cap), or the page is corrupt.
function Pool:get(h, buf)
    check_handle(h)
    local status = C.apr_zram_get(self.handle, h, buf or self.buf)
    if status ~= 0 then return core.failure(status) end
    if buf then return true end
    return ffi.string(self.buf, self.page_bytes)
end

-- free(h) -> true, or nil and the message when h names no page.
function Pool:free(h)
    check_handle(h)
    local status = C.apr_zram_drop(self.handle, h)
    if status ~= 0 then return core.failure(status) end
    return true
end

-- has(h) -> whether h names a page held now.
function Pool:has(h)
    check_handle(h)
    return C.apr_zram_has(self.handle, h) ~= 0
end

local STAT_FIELDS = {
    "page_bytes", "max_bytes", "pages", "same_pages", "raw_pages", "stored_bytes", "slab_bytes", "host_bytes",
    "ratio", "puts", "gets", "drops", "same_hits", "evictions", "misses", "corrupt", "compressed_in",
    "compress_ns", "decompressed_out", "decompress_ns", "compress_gbs", "decompress_gbs",
}

-- pool_stats(cdata) -> the apr_zram_stats as a table of numbers.
function M.pool_stats(s)
    local t = {}
    for _, k in ipairs(STAT_FIELDS) do t[k] = tonumber(s[k]) end
    return t
end

local SWAP_FIELDS = {
    "blocks_out", "blocks_clean", "blocks_in", "restore_failed", "blocks_lost", "blocks_dropped", "blocks_held",
    "pages_same", "bytes_out", "bytes_in", "out_ns", "in_ns",
}

-- swap_stats(cdata) -> an apr_kv_swap_stats (KV blocks to and from a
-- pool) as a table of numbers.
function M.swap_stats(s)
    local t = {}
    for _, k in ipairs(SWAP_FIELDS) do t[k] = tonumber(s[k]) end
    return t
end

-- stats() -> a table of the pool's counters (apr.h's apr_zram_stats says
-- what each one is), plus algo.
function Pool:stats()
    C.apr_zram_get_stats(self.handle, stats_box)
    local t = M.pool_stats(stats_box)
    t.algo = self.algo
    return t
end

-- algo_id(name) -> the apr_zram_algo of "lz4" or "zstd", or nil.
function M.algo_id(name) return ALGOS[name] end

-- classify(pages, n_pages, page_bytes [, threads]) -> how many of the
-- n_pages pages at the pointer `pages` are same-filled, and an array of
-- n_pages bytes (1: same-filled). threads: 0 (all) by default.
function M.classify(pages, n_pages, page_bytes, threads)
    local same = ffi.new("uint8_t[?]", math.max(n_pages, 1))
    local n_same = ffi.new("uint64_t[1]")
    local status = C.apr_zram_classify(pages, n_pages, page_bytes, threads or 0, same, nil, n_same)
    if status ~= 0 then return core.failure(status) end
    return tonumber(n_same[0]), same
end

-- copy_pages(dst, src, n_pages, page_bytes [, threads]): memcpy split over
-- threads as classify splits its pages (the benchmarks' baseline).
function M.copy_pages(dst, src, n_pages, page_bytes, threads)
    local status = C.apr_zram_copy_pages(dst, src, n_pages, page_bytes, threads or 0)
    if status ~= 0 then return core.failure(status) end
    return true
end

-- simd(on) -> whether the AVX2 check is in use after the call (false on
-- a CPU without AVX2). For tests and benchmarks.
function M.simd(on) return C.apr_zram_simd(on and 1 or 0) ~= 0 end

return M
