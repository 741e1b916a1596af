-- zram_codec.lua — LZ4 and ZSTD on real KV cache pages: the keys and values
-- a model computes for several prompts (code, prose, a chat), in an f16 and
-- a q8_0 cache, put into a zram pool page by page and read back (checked),
-- with their ratios as they come out. KV of real text is dense numbers:
-- the ratios may be small, and they are reported as measured.
--
--   apr run bench/zram_codec.lua [--model MODEL.gguf] [--tokens 512] [--reps 3] [--gpu] [--json]
--
-- Pages are the pool's pages in the KV swap: one layer's keys or values of
-- one block of 32 tokens (apr_context_seq_kv_pages). The codec rate counts
-- page bytes over codec time alone (apr_zram_stats); the "put" and "get"
-- rates are page bytes over the whole calls on one thread (same-filled
-- check, hashing, slab copy included). The ratio is page bytes over the
-- compressed bytes, and in brackets over the pool's host bytes (slab
-- rounding and entries included). Each rate is the median of --reps fresh
-- pools over the same pages (a shared machine's neighbours come and go).
local apr = require "apr"
local core = require "apr.core"
local zram = require "apr.zram"
local json = require "apr.json"
local ffi, C = core.ffi, core.C
local hrtime = require("luv").hrtime

local opts = { tokens = 512, reps = 3 }
do
    local i = 1
    while i <= #arg do
        local k = arg[i]:match("^%-%-(.+)$")
        if k == "json" or k == "gpu" then
            opts[k] = true
        elseif k then
            i = i + 1
            opts[k] = tonumber(arg[i]) or arg[i]
        end
        i = i + 1
    end
end
local model_path = opts.model or require("apr.model").default_model_path()
local m = assert(apr.load(model_path, { device = opts.gpu and "cuda" or "cpu" }))

-- the checkout this script is in (a bundle's apr runs it from there too)
local root = (debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]+$")) or "."

local function read(path)
    local f = io.open(root .. "/" .. path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end
-- Several kinds of text; the chat is rendered with the model's template.
local prompts = {
    { "C source", read("runtime/zram/pool.c") },
    { "Lua source", read("lua/apr/engine.lua") },
    { "prose", read("docs/model.md") or read("README.md") },
    { "chat", m.chat_template and m:render({
        { role = "system", content = "You are a helpful coding assistant." },
        { role = "user", content = "Explain, step by step, how a hash map handles collisions, with an example " ..
                                   "in Rust and one in Python, and say when open addressing beats chaining." },
        { role = "assistant", content = read("docs/hub.md") or "" },
    }) or read("docs/server.md") },
}

local function ids_of(text)
    local ids = m:tokenize(text, { special = true })
    local n = math.min(#ids, opts.tokens)
    n = n - n % 32  -- whole blocks
    local t = {}
    for i = 1, n do t[i] = ids[i] end
    return t
end

local ctx_box = ffi.new("apr_context *[1]")
local batch = ffi.new("apr_batch")

-- The KV pages of text in a cache of kv_type: a string of n_pages pages.
local function kv_pages(ids, kv_type)
    local p = ffi.new("apr_context_params")
    C.apr_context_params_default(p)
    p.n_ctx = #ids + 32
    p.n_seq = 1
    p.n_batch = 256
    p.kv_type = kv_type
    assert(C.apr_context_new(m.handle, p, ctx_box) == 0, core.last_error())
    local ctx = ffi.gc(ctx_box[0], C.apr_context_free)
    local buf = ffi.new("int32_t[256]")
    local i = 1
    while i <= #ids do
        local n = math.min(256, #ids - i + 1)
        for k = 0, n - 1 do buf[k] = ids[i + k] end
        batch.n, batch.ids, batch.pos, batch.seq, batch.want_logits = n, buf, nil, nil, nil
        local out = ffi.new("float[?]", m.info.n_vocab)
        assert(C.apr_decode(ctx, batch, out) == 0, core.last_error())
        i = i + n
    end
    local pb = tonumber(C.apr_context_kv_page_bytes(ctx))
    local n_blocks = #ids / 32
    local n_pages = n_blocks * 2 * m.info.n_layer
    local out = ffi.new("uint8_t[?]", n_pages * pb)
    assert(C.apr_context_seq_kv_pages(ctx, 0, 0, n_blocks, out) == 0, core.last_error())
    C.apr_context_free(ffi.gc(ctx, nil))
    return out, n_pages, pb
end

local median = require("apr.bench.stats").median

local function measure_once(pages, n_pages, pb, algo)
    local pool = zram.pool { algo = algo, page_bytes = pb }
    local handles = {}
    local t0 = hrtime()
    for i = 0, n_pages - 1 do handles[i] = assert(pool:put(pages + i * pb)) end
    local t_put = (hrtime() - t0) * 1e-9
    local back = ffi.new("uint8_t[?]", pb)
    t0 = hrtime()
    for i = 0, n_pages - 1 do assert(pool:get(handles[i], back)) end
    local t_get = (hrtime() - t0) * 1e-9
    for i = 0, n_pages - 1 do  -- checked apart from the timing
        assert(pool:get(handles[i], back))
        assert(ffi.string(back, pb) == ffi.string(pages + i * pb, pb), "page " .. i .. " came back different")
    end
    local s = pool:stats()
    local bytes = n_pages * pb
    return {
        pages = n_pages, same = s.same_pages, raw = s.raw_pages,
        ratio = bytes / math.max(s.stored_bytes, 1), pool_ratio = s.ratio,
        codec_gbs = s.compress_gbs, decodec_gbs = s.decompress_gbs,
        put_gbs = bytes / t_put / 1e9, get_gbs = bytes / t_get / 1e9,
    }
end

local function measure(pages, n_pages, pb, algo)
    local runs = {}
    for r = 1, opts.reps do runs[r] = measure_once(pages, n_pages, pb, algo) end
    local out = runs[1]
    for _, k in ipairs { "codec_gbs", "decodec_gbs", "put_gbs", "get_gbs" } do
        local v = {}
        for r = 1, opts.reps do v[r] = runs[r][k] end
        out[k] = median(v)
    end
    return out
end

local rows = {}
local kv_types = { { "f16", C.APR_F16 }, { "q8_0", C.APR_Q8_0 } }
for _, pr in ipairs(prompts) do
    if pr[2] then
        local ids = ids_of(pr[2])
        for _, kt in ipairs(kv_types) do
            local pages, n_pages, pb = kv_pages(ids, kt[2])
            for _, algo in ipairs { "lz4", "zstd" } do
                local r = measure(pages, n_pages, pb, algo)
                r.prompt, r.kv, r.algo, r.tokens, r.page_bytes = pr[1], kt[1], algo, #ids, pb
                rows[#rows + 1] = r
            end
        end
    end
end

print(string.format("%s, %s; pages of one layer's keys or values of 32 tokens; one thread; medians of %d",
    model_path:match("[^/]+$"), opts.gpu and "KV computed on the GPU" or "KV computed on the CPU", opts.reps))
print(string.format("%-10s %6s %-4s %-4s %6s %5s %5s %13s %11s %11s %9s %9s", "prompt", "tokens", "kv", "algo",
    "pages", "same", "raw", "ratio (pool)", "codec GB/s", "decode GB/s", "put GB/s", "get GB/s"))
for _, r in ipairs(rows) do
    print(string.format("%-10s %6d %-4s %-4s %6d %5d %5d %6.3f (%.3f) %11.3f %11.3f %9.3f %9.3f", r.prompt, r.tokens,
        r.kv, r.algo, r.pages, r.same, r.raw, r.ratio, r.pool_ratio, r.codec_gbs, r.decodec_gbs, r.put_gbs,
        r.get_gbs))
end
if opts.json then print(json.encode({ model = model_path, rows = rows })) end
