-- zram_pool.lua — a file's bytes through a compressed page pool
-- (apr.zram, docs/zram.md): every 4 KiB page put, read back and checked,
-- then the pool's figures; with a cap, the oldest pages make room.
--
--   apr run demos/zram_pool.lua FILE [lz4|zstd] [MAX_BYTES]
--   apr run demos/zram_pool.lua tests/fixtures/models/tiny-q8_0.gguf zstd
local apr = require "apr"

local path, algo, max_bytes = arg[1], arg[2] or "lz4", tonumber(arg[3] or "0")
if not path then
    io.stderr:write("usage: apr run demos/zram_pool.lua FILE [lz4|zstd] [MAX_BYTES]\n")
    return 2
end
local f, err = io.open(path, "rb")
if not f then
    io.stderr:write(err, "\n")
    return 1
end

local pool = apr.zram.pool { algo = algo, max_bytes = max_bytes }
local pb = pool.page_bytes
local handles, pages = {}, {}
while true do
    local page = f:read(pb)
    if not page then break end
    if #page < pb then page = page .. string.rep("\0", pb - #page) end  -- the last page, padded
    local h, perr = pool:put(page)
    if not h then
        io.stderr:write(perr, "\n")
        return 1
    end
    handles[#handles + 1] = h
    pages[#pages + 1] = page
end
f:close()

-- Every page still held reads back as it went in; evicted ones say so.
local held, evicted = 0, 0
for i, h in ipairs(handles) do
    local page, gerr = pool:get(h)
    if page then
        assert(page == pages[i], "page " .. i .. " came back different")
        held = held + 1
    else
        assert(gerr:find("names no page", 1, true), gerr)
        evicted = evicted + 1
    end
end

local s = pool:stats()
print(string.format("%s: %d pages of %d bytes through %s", path, #handles, pb, s.algo))
print(string.format("  held %d (checked), evicted %d under a cap of %s", held, evicted,
    max_bytes > 0 and (max_bytes .. " bytes") or "none"))
print(string.format("  same-filled pages put %d, held %d (one repeated word: no bytes stored)", s.same_hits,
    s.same_pages))
print(string.format("  stored raw %d (they did not shrink)", s.raw_pages))
print(string.format("  stored %d bytes in %d bytes of slabs; host bytes %d", s.stored_bytes, s.slab_bytes,
    s.host_bytes))
print(string.format("  ratio %.2f  (page bytes held / host bytes)", s.ratio))
print(string.format("  compress %.2f GB/s, decompress %.2f GB/s (codec time only, one thread)", s.compress_gbs,
    s.decompress_gbs))
