-- bench/apr_convert.lua — APR v2 against GGUF on one model, in one run:
-- conversion speed per codec, file size per codec and tensor type, and
-- load-to-first-token (warm page cache, and cold where caches can be
-- dropped) with the peak host RSS of the load.
--
--   ./apr run bench/apr_convert.lua [MODEL.gguf] [--synth PRESET] [--dir DIR]
--        [--codecs lz4,zstd,none] [--threads N] [--reps 3] [--device auto|cpu|cuda]
--        [--no-load] [--keep] [--filters] [--back-over-source]
--
-- MODEL defaults to the default model (models/); --synth PRESET writes
-- `apr synth --preset PRESET --layout q4_k_m` into DIR first (kept and
-- reused), e.g. qwen2.5-coder-32b for the 19.8 GB file of the spec.
--
-- Conversion: GGUF -> APR through the same job as `apr convert`, with the
-- source's SHA-256 computed during the conversion (no sidecar: the worst
-- case), timed from start to the renamed file; GB/s are source bytes per
-- second. Then APR -> GGUF, whose output must hash to the source's digest.
--
-- --filters adds conversions with each filter forced (lz4 and zstd, with and
-- without byte planes) and a table of their ratios per tensor type: the
-- measurement behind the writer's default (byte planes with zstd only).
--
-- Loads: each load runs in a fresh child process (`--child-load`) that
-- records its RSS after the CUDA runtime is up (the baseline), loads the
-- model, decodes a short prompt and times its first token, then takes 15
-- more greedy tokens (GGUF and APR must give the same ids) and reports the
-- seconds and its peak RSS (VmHWM). Codecs are taken one at a time
-- (convert, convert back, loads, remove: the disk holds at most the GGUF,
-- one APR file and the copy back; with --back-over-source the GGUF is
-- removed once the APR file is whole and written back in its place, its
-- SHA-256 checked against the source's, so two files at most: the 32B's
-- round trip on a 64 GB disk), and within a codec the GGUF and the APR
-- file alternate, so a busy machine slows both alike; the table gives
-- medians and the APR file's ratio to the GGUF measured beside it.
-- Warm: after one unmeasured load of each. Cold: page cache dropped before
-- every load (needs root and a writable /proc/sys/vm/drop_caches; else
-- reported as not measured).
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local convert = require "apr.convert"
local cjson = require "cjson"
local uv = require "luv"

local function now() return uv.hrtime() * 1e-9 end
local function fail(msg, ...) io.stderr:write("bench/apr_convert.lua: ", string.format(msg, ...), "\n") os.exit(1) end

local median = require("apr.bench.stats").median

local function status_kb(field)
    local f = io.open("/proc/self/status")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    local v = text:match(field .. ":%s+(%d+) kB")
    return v and tonumber(v) * 1024
end

-- ------------------------------------------------------------ child: one load

if arg[1] == "--child-load" then
    local path, device = arg[2], arg[3] or "auto"
    -- the CUDA context (if any) is part of the baseline, not of the load:
    -- apr_device_get_info makes device 0's primary context
    if device ~= "cpu" and C.apr_device_count() > 0 then C.apr_device_get_info(0, ffi.new("apr_device_info")) end
    collectgarbage()
    local base = status_kb("VmRSS")
    local t0 = now()
    local m, err = require("apr").load(path, { device = device, ctx = 256 })
    if not m then fail("%s", err) end
    local t_load = now()
    local ids, t1 = {}, nil
    -- the first token's time; then 15 more greedy ids, the same for GGUF and APR
    for t in m:generate("fn fibonacci(n: u64) -> u64 {", { max_tokens = 16, temperature = 0, raw = true }) do
        t1 = t1 or now()
        ids[#ids + 1] = t.id
    end
    io.stdout:write(cjson.encode({ load = t_load - t0, first_token = (t1 or now()) - t0,
        token = table.concat(ids, ","), base_rss = base, peak_rss = status_kb("VmHWM"),
        device = m.info and m.info.device or device }), "\n")
    os.exit(0)
end

-- ------------------------------------------------------------ options

local opts = { dir = "/tmp/apr-bench", codecs = "lz4,zstd,none", threads = 0, reps = 3, device = "auto" }
local model
do
    local i = 1
    while i <= #arg do
        local a = arg[i]
        if a == "--no-load" then opts.no_load = true; i = i + 1
        elseif a == "--filters" then opts.filters = true; i = i + 1
        elseif a == "--keep" then opts.keep = true; i = i + 1
        elseif a == "--back-over-source" then opts.back_over_source = true; i = i + 1
        elseif a:match("^%-%-") then
            local k = a:sub(3)
            if k ~= "synth" and opts[k] == nil then fail("unknown option %s", a) end
            if arg[i + 1] == nil then fail("%s needs a value", a) end
            opts[k] = tonumber(arg[i + 1]) or arg[i + 1]
            i = i + 2
        else model = a; i = i + 1 end
    end
end
os.execute("mkdir -p '" .. opts.dir .. "'")
local apr_bin = uv.exepath()

if opts.synth then
    model = opts.dir .. "/" .. opts.synth .. "-q4_k_m.gguf"
    if not io.open(model, "rb") then
        io.stderr:write("writing ", model, " (apr synth)\n")
        local ok = os.execute(string.format("'%s' synth --preset %s --layout q4_k_m '%s' >&2", apr_bin, opts.synth, model))
        if ok ~= 0 and ok ~= true then fail("apr synth failed") end
    end
end
model = model or require("apr.model").default_model_path()
local gguf = assert(require("apr.file").open(model))
-- only its size is needed: closed at once, so removing the file
-- (--back-over-source) frees its blocks
do
    local size = gguf.size
    gguf:close()
    gguf = { size = size }
end
local codecs = {}
for c in tostring(opts.codecs):gmatch("[^,]+") do codecs[#codecs + 1] = c end
local threads = opts.threads > 0 and opts.threads or 0  -- 0: the pool's default (every CPU, or $APR_THREADS)

local function gb(n) return string.format("%.2f", n / 1e9) end

-- ------------------------------------------------------------ loads

local function child_load(path)
    local p = io.popen(string.format("'%s' run bench/apr_convert.lua --child-load '%s' %s", apr_bin, path, opts.device))
    local out = p:read("*a")
    p:close()
    local ok, j = pcall(cjson.decode, out)
    if not ok then fail("load of %s failed: %s", path, out) end
    return j
end

local function drop_caches()
    os.execute("sync")
    local f = io.open("/proc/sys/vm/drop_caches", "w")
    if not f then return false end
    local ok = f:write("3\n")
    f:close()
    return ok ~= nil
end

-- Loads of each file in `list`, alternated: warm (after one unmeasured
-- load of each), then cold when caches can be dropped.
local function measure_loads(list)
    local out = {}
    for _, f in ipairs(list) do
        child_load(f.path)
        out[f.label] = { warm = {}, cold = {}, rss = {} }
    end
    for _ = 1, opts.reps do
        for _, f in ipairs(list) do
            local j, l = child_load(f.path), out[f.label]
            l.warm[#l.warm + 1] = j.first_token
            l.rss[#l.rss + 1] = j.peak_rss - j.base_rss
            l.token = l.token or j.token
            if l.token ~= j.token then fail("%s: greedy ids %s, earlier %s", f.label, j.token, l.token) end
            l.device = j.device
        end
    end
    out.cold_measured = drop_caches()
    if out.cold_measured then
        for _ = 1, opts.reps do
            for _, f in ipairs(list) do
                drop_caches()
                local l = out[f.label]
                l.cold[#l.cold + 1] = child_load(f.path).first_token
            end
        end
    end
    return out
end

-- Free bytes where path lives (df), or nil.
local function free_bytes(dir)
    local p = io.popen("df -B1 --output=avail '" .. dir .. "' 2>/dev/null | tail -1")
    local n = tonumber((p:read("*a") or ""):match("%d+"))
    p:close()
    return n
end

-- ------------------------------------------------------------ per codec
-- One codec at a time: convert, convert back (checked against the source's
-- SHA-256), then the loads of the GGUF and this APR file alternated, then
-- the APR file is removed: at most the GGUF, one APR file and one copy
-- back exist at once (the 32B's three are 60 GB).

io.stderr:write(string.format("model %s (%s GB)\n", model, gb(gguf.size)))
local results = {}
for _, codec in ipairs(codecs) do
    local out = string.format("%s/bench-%s.apr", opts.dir, codec)
    local free = free_bytes(opts.dir)
    if free and free < (opts.back_over_source and 1.05 or 2.05) * gguf.size then
        fail("%s has %s GB free; converting needs %s GB (an APR file and the GGUF written back)", opts.dir, gb(free),
            gb(2.05 * gguf.size))
    end
    local r, err = convert.run(model, out, { compression = codec, threads = opts.threads > 0 and opts.threads or nil,
        sidecar = false })
    if not r then fail("convert %s: %s", codec, err) end
    -- again with the source's digest given (as a fresh sidecar gives it):
    -- the conversion without its second sequential SHA-256 (the first file
    -- goes first: one APR file on the disk at a time)
    os.remove(out)
    local known
    known, err = convert.run(model, out, { compression = codec, threads = opts.threads > 0 and opts.threads or nil,
        source_sha256 = r.source_sha256, sidecar = false })
    if not known then fail("convert %s (digest known): %s", codec, err) end
    r.seconds_known = known.seconds
    local back = opts.back_over_source and model or opts.dir .. "/bench-back.gguf"
    if opts.back_over_source then os.remove(model) end
    local x
    x, err = convert.run(out, back, { threads = opts.threads > 0 and opts.threads or nil, sidecar = false })
    if not x then fail("export %s: %s", codec, err) end
    if not x.matches_source then fail("export %s: SHA-256 %s is not the source's %s", codec, x.sha256, r.source_sha256) end
    if not opts.back_over_source then os.remove(back) end
    io.stderr:write(string.format("  %-5s %.1f s (%.2f GB/s), back %.1f s, SHA-256 %s\n", codec, r.seconds,
        r.input_bytes / r.seconds / 1e9, x.seconds, x.sha256))
    local entry = { codec = codec, to_apr = r, to_gguf = x }
    if not opts.no_load then
        entry.loads = measure_loads({ { label = "GGUF", path = model }, { label = "APR", path = out } })
    end
    results[#results + 1] = entry
    if not opts.keep then os.remove(out) end
end

local variants = {}
if opts.filters then
    for _, codec in ipairs({ "lz4", "zstd" }) do
        for _, filter in ipairs({ "none", "byteplane" }) do
            local out = string.format("%s/bench-%s-%s.apr", opts.dir, codec, filter)
            local t0 = now()
            local r, err = convert.run(model, out, { compression = codec, filter = filter, sidecar = false,
                threads = opts.threads > 0 and opts.threads or nil })
            if not r then fail("convert %s %s: %s", codec, filter, err) end
            -- decoding cost: every chunk of the file checked (decoded) once
            local t1 = now()
            local v
            v, err = convert.verify(out, { threads = opts.threads > 0 and opts.threads or nil })
            if not v then fail("verify %s %s: %s", codec, filter, err) end
            variants[#variants + 1] = { label = codec .. (filter == "byteplane" and "+bp" or ""), r = r,
                write_s = t1 - t0, read_s = now() - t1 }
            os.remove(out)
        end
    end
end

-- ------------------------------------------------------------ tables

local out = {}
local function line(...) out[#out + 1] = string.format(...) end
line("")
line("APR v2 vs GGUF: %s (%s GB), %s threads, git %s", model, gb(gguf.size), threads > 0 and threads or "all",
    ffi.string(C.apr_git_revision()))
line("")
line("%-6s %9s %9s %14s %11s %8s %11s", "codec", "convert s", "GB/s", "GB/s src known", "APR GB", "ratio", "back GB/s")
for _, r in ipairs(results) do
    local a, x = r.to_apr, r.to_gguf
    line("%-6s %9.2f %9.2f %14.2f %11s %7.2f%% %11.2f", r.codec, a.seconds, a.input_bytes / a.seconds / 1e9,
        a.input_bytes / a.seconds_known / 1e9, gb(a.output_bytes), 100 * a.output_bytes / a.input_bytes,
        x.output_bytes / x.seconds / 1e9)
end
line("round trip: each GGUF written back hashed to the source's SHA-256 %s", results[1] and results[1].to_gguf.sha256 or "")
line("GB/s: source bytes per second, the source's SHA-256 computed on the way; 'src known': given, as a fresh")
line("sidecar (apr info) gives it. Back: APR -> GGUF, checked against the source's SHA-256.")
line("")
-- stored / raw bytes per tensor type, per codec
local types, by = {}, {}
for _, r in ipairs(results) do
    for _, t in ipairs(r.to_apr.by_type) do
        if not by[t.type] then by[t.type] = { bytes = t.bytes }; types[#types + 1] = t.type end
        by[t.type][r.codec] = t.ratio
    end
end
table.sort(types, function(x, y) return by[x].bytes > by[y].bytes end)
local head = string.format("%-6s %12s", "type", "GB")
for _, r in ipairs(results) do head = head .. string.format(" %8s", r.codec) end
line("%s", head)
for _, ty in ipairs(types) do
    local row = string.format("%-6s %12.4f", ty, by[ty].bytes / 1e9)
    for _, r in ipairs(results) do row = row .. string.format(" %7.2f%%", 100 * (by[ty][r.codec] or 1)) end
    line("%s", row)
end
if #variants > 0 then
    line("")
    line("byte planes (bp) on and off: stored / raw bytes per tensor type; seconds to write, and to read back")
    local vtypes, vby = {}, {}
    for _, v in ipairs(variants) do
        for _, t in ipairs(v.r.by_type) do
            if not vby[t.type] then vby[t.type] = { bytes = t.bytes }; vtypes[#vtypes + 1] = t.type end
            vby[t.type][v.label] = t.ratio
        end
    end
    table.sort(vtypes, function(x, y) return vby[x].bytes > vby[y].bytes end)
    local vh = string.format("%-6s", "type")
    for _, v in ipairs(variants) do vh = vh .. string.format(" %8s", v.label) end
    line("%s", vh)
    for _, ty in ipairs(vtypes) do
        local row = string.format("%-6s", ty)
        for _, v in ipairs(variants) do row = row .. string.format(" %7.2f%%", 100 * (vby[ty][v.label] or 1)) end
        line("%s", row)
    end
    local all, ws, rs = string.format("%-6s", "all"), string.format("%-6s", "write"), string.format("%-6s", "read")
    for _, v in ipairs(variants) do
        all = all .. string.format(" %7.2f%%", 100 * v.r.stored_bytes / v.r.tensor_bytes)
        ws = ws .. string.format(" %7.2fs", v.write_s)
        rs = rs .. string.format(" %7.2fs", v.read_s)
    end
    line("%s", all)
    line("%s", ws)
    line("%s", rs)
end
if not opts.no_load then
    line("")
    line("load + first token (median of %d, fresh process each; warm page cache, and cold)", opts.reps)
    line("%-9s %-6s %11s %11s %8s %11s %11s %8s %11s %11s %s", "APR", "device", "GGUF warm", "APR warm", "ratio",
        "GGUF cold", "APR cold", "ratio", "GGUF RSS+", "APR RSS+", "16 greedy ids")
    local cold_note
    for _, r in ipairs(results) do
        local g, a = r.loads.GGUF, r.loads.APR
        local gw, aw, gc, ac = median(g.warm), median(a.warm), median(g.cold), median(a.cold)
        line("%-9s %-6s %9.3f s %9.3f s %7.3fx %11s %11s %8s %8.2f GB %8.2f GB %s %s", r.codec, tostring(a.device),
            gw, aw, aw / gw, gc and string.format("%.3f s", gc) or "n/a", ac and string.format("%.3f s", ac) or "n/a",
            gc and ac and string.format("%.3fx", ac / gc) or "n/a", median(g.rss) / 1e9, median(a.rss) / 1e9,
            g.token == a.token and "same" or "DIFFERENT", g.token == a.token and "" or (g.token .. " vs " .. a.token))
        if not r.loads.cold_measured then cold_note = true end
    end
    if cold_note then line("cold: not measured (cannot write /proc/sys/vm/drop_caches: needs root)") end
    line("RSS+: the load's peak resident set (VmHWM) over the process's after CUDA started; mapped file pages count")
end
io.stdout:write(table.concat(out, "\n"), "\n")
