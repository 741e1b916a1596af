-- zram_gpu.lua — the GPU's same-filled classification (kernels/zram.cu)
-- beside the device's copy bandwidth, both measured here in one run
-- (apr_device_zram_bandwidth, apr_device_copy_bandwidth: best of five,
-- CUDA events). Copy bandwidth counts bytes read plus bytes written; the
-- classification of same-filled pages reads every byte once, so its rate
-- is set beside the copy's (target >= 0.8). On random pages each warp
-- leaves its page after the first 2 KiB: that rate is page bytes
-- classified, not bytes read.
--
--   apr run bench/zram_gpu.lua [--gib 4] [--device 0] [--json]
local core = require "apr.core"
local json = require "apr.json"
local ffi, C = core.ffi, core.C

local opts = { gib = 4, device = 0 }
for i = 1, #arg do
    local k = arg[i]:match("^%-%-(.+)$")
    if k == "json" then opts.json = true elseif k then opts[k] = tonumber(arg[i + 1]) end
end
if C.apr_device_count() == 0 then
    print("no CUDA device (or a build without CUDA): nothing to measure")
    os.exit(0)
end
local info = ffi.new("apr_device_info")
assert(C.apr_device_get_info(opts.device, info) == 0, core.last_error())
local bytes = math.floor(opts.gib * 2 ^ 30)
local out = ffi.new("double[1]")
assert(C.apr_device_copy_bandwidth(opts.device, bytes, out) == 0, core.last_error())
local copy = out[0] / 1e9

local rows = {}
-- 4 KiB, and the KV pages of the default model (8 KiB f16) and the 32B (64 KiB f16)
for _, pb in ipairs { 4096, 8192, 65536 } do
    assert(C.apr_device_zram_bandwidth(opts.device, bytes, pb, 1, out) == 0, core.last_error())
    local same = out[0] / 1e9
    assert(C.apr_device_zram_bandwidth(opts.device, bytes, pb, 0, out) == 0, core.last_error())
    rows[#rows + 1] = { page = pb, same_gbs = same, random_gbs = out[0] / 1e9, fraction = same / copy }
end

print(string.format("%s: copy bandwidth %.0f GB/s (read + written, %.1f GiB), datasheet %.0f GB/s",
    ffi.string(info.name), copy, opts.gib, info.peak_bandwidth / 1e9))
print(string.format("%-10s %18s %16s %18s", "page", "same-filled GB/s", "of copy (>=0.8)", "random GB/s*"))
for _, r in ipairs(rows) do
    print(string.format("%-10d %18.0f %16.2f %18.0f", r.page, r.same_gbs, r.fraction, r.random_gbs))
end
print("* page bytes classified a second: a random page is left after its first 2 KiB")
if opts.json then print(json.encode({ device = ffi.string(info.name), copy_gbs = copy, rows = rows })) end
