-- zram_same.lua — the same-filled page check (runtime/zram/same.c) beside
-- memcpy of the same bytes, in one run: on same-filled pages the check
-- must read every byte, so its rate is set beside memcpy's read rate (bytes
-- copied a second: each read once); on random pages it leaves each page
-- after its first 64 bytes, so the rate is of page bytes classified, not
-- of bytes read. One core and all cores, AVX2 and the scalar loop.
--
--   apr run bench/zram_same.lua [--mib 256] [--page 4096] [--rounds 7] [--json]
--
-- Each round times memcpy and the check back to back and keeps their ratio;
-- the table gives medians of the rates and of the per-round ratios (on a
-- shared machine neighbours come and go between rounds, less within one).
-- The buffers are larger than the caches (256 MiB by default), so the rates
-- are those of memory; --mib 0.25 keeps them in L2 (each timing then passes
-- over the buffer enough times to cover 64 MiB).
local core = require "apr.core"
local zram = require "apr.zram"
local json = require "apr.json"
local ffi, C = core.ffi, core.C
local hrtime = require("luv").hrtime

local opts = { mib = 256, page = 4096, rounds = 7 }
for i = 1, #arg do
    local k = arg[i]:match("^%-%-(.+)$")
    if k == "json" then opts.json = true
    elseif k and opts[k] then opts[k] = tonumber(arg[i + 1]) or error("--" .. k .. " needs a number") end
end

local bytes = opts.mib * 2 ^ 20
local pb = opts.page
local n_pages = math.floor(bytes / pb)
bytes = n_pages * pb

local function buffer()
    local p = C.apr_alloc(bytes)
    assert(p ~= nil, core.last_error())
    return ffi.gc(ffi.cast("uint8_t *", p), C.apr_free)
end
local same_buf, rand_buf, dst = buffer(), buffer(), buffer()
-- same-filled: page i is byte i % 251 repeated (a different word per page)
for i = 0, n_pages - 1 do ffi.fill(same_buf + i * pb, pb, (i % 251) + 1) end
-- random: an LCG's high bits, 32 at a time
do
    local w = ffi.cast("uint32_t *", rand_buf)
    local x = 12345
    for i = 0, bytes / 4 - 1 do
        x = (x * 1103515245 + 12345) % 2147483648
        w[i] = x * 2 + (i % 2)
    end
end

-- passes over the buffers per timing: at least 64 MiB of pages
local passes = math.max(1, math.floor(64 * 2 ^ 20 / bytes))

local function timed(fn)
    local t0 = hrtime()
    for _ = 1, passes do fn() end
    return (hrtime() - t0) * 1e-9 / passes
end

local function classify(buf, threads)
    local n, same = zram.classify(buf, n_pages, pb, threads)
    assert(n, same)
    return n
end

local median = require("apr.bench.stats").median

local rows = {}
local has_avx2 = zram.simd(true)
local paths = has_avx2 and { "avx2", "scalar" } or { "scalar" }
for _, threads in ipairs { 1, 0 } do
    for _, path in ipairs(paths) do
        zram.simd(path == "avx2")
        -- warm-up: page faults of dst, the pool's threads started
        assert(zram.copy_pages(dst, same_buf, n_pages, pb, threads))
        assert(classify(same_buf, threads) == n_pages, "every page is same-filled")
        local cp, sf, rn, ratio = {}, {}, {}, {}
        for r = 1, opts.rounds do
            local t_copy = timed(function() assert(zram.copy_pages(dst, same_buf, n_pages, pb, threads)) end)
            local t_same = timed(function() assert(classify(same_buf, threads) == n_pages) end)
            local t_rand = timed(function() assert(classify(rand_buf, threads) == 0) end)
            cp[r], sf[r], rn[r] = bytes / t_copy / 1e9, bytes / t_same / 1e9, bytes / t_rand / 1e9
            ratio[r] = sf[r] / cp[r]
        end
        rows[#rows + 1] = { threads = threads == 0 and "all" or "1", path = path, memcpy_gbs = median(cp),
                            same_gbs = median(sf), ratio = median(ratio), ratio_min = math.min(unpack(ratio)),
                            random_gbs = median(rn) }
    end
end
zram.simd(true)

print(string.format("%g MiB of %d-byte pages, %d rounds; the machine's load may vary between rounds", opts.mib, pb,
    opts.rounds))
print(string.format("%-7s %-6s %12s %14s %16s %16s", "threads", "check", "memcpy GB/s", "same-filled GB/s",
    "same/memcpy", "random GB/s*"))
for _, r in ipairs(rows) do
    print(string.format("%-7s %-6s %12.2f %14.2f %10.2f (min %.2f) %14.1f", r.threads, r.path, r.memcpy_gbs,
        r.same_gbs, r.ratio, r.ratio_min, r.random_gbs))
end
print("* page bytes classified a second: a random page is left after its first 64 bytes (target on same-filled " ..
      "pages: >= 0.8x memcpy)")
if opts.json then
    print(json.encode({ mib = opts.mib, page = pb, rounds = opts.rounds, rows = rows }))
end
