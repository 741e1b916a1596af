-- apr devices: the GPUs apr can run models on.
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

M.spec = {
    usage = "apr devices [--json] [--bandwidth]",
    summary = "List CUDA devices: name, memory, compute capability, whether apr runs on them.",
    options = {
        { "json", help = "print one JSON array" },
        { "bandwidth", help = "also measure each device's copy bandwidth (allocates 2 x 2 GiB)" },
    },
    examples = { "apr devices", "apr devices --json --bandwidth" },
}

local function gib(b) return tonumber(b) / 2 ^ 30 end

function M.run(opts)
    local list = {}
    local info = ffi.new("apr_device_info")
    for i = 0, C.apr_device_count() - 1 do
        if C.apr_device_get_info(i, info) ~= 0 then
            require("apr.cli").fail("device %d: %s", i, ffi.string(C.apr_last_error()))
        end
        local d = {
            index = i, name = ffi.string(info.name),
            compute_capability = string.format("%d.%d", info.cc_major, info.cc_minor),
            multiprocessors = info.n_sm, memory_bytes = tonumber(info.total_bytes),
            free_bytes = tonumber(info.free_bytes), l2_bytes = tonumber(info.l2_bytes),
            peak_bandwidth_gbs = info.peak_bandwidth / 1e9,
            driver_cuda = string.format("%d.%d", math.floor(info.driver_version / 1000), info.driver_version % 1000 / 10),
            runtime_cuda = string.format("%d.%d", math.floor(info.runtime_version / 1000), info.runtime_version % 1000 / 10),
            supported = info.supported ~= 0,
        }
        if opts.bandwidth then
            local bw = ffi.new("double[1]")
            if C.apr_device_copy_bandwidth(i, 2 * 2 ^ 30, bw) == 0 then d.copy_bandwidth_gbs = bw[0] / 1e9 end
        end
        list[#list + 1] = d
    end
    if opts.json then
        local cjson = require "cjson"
        io.stdout:write(#list > 0 and cjson.encode(list) or "[]", "\n")
        return 0
    end
    if #list == 0 then
        io.stdout:write(C.apr_cuda_compiled() ~= 0 and "no CUDA device found; models run on the CPU\n"
            or "this build of apr has no CUDA backend; models run on the CPU\n")
        return 0
    end
    for _, d in ipairs(list) do
        io.stdout:write(string.format("%d: %s, compute %s, %d SMs, %.1f GiB (%.1f free), L2 %d MiB, CUDA %s (driver %s)%s\n",
            d.index, d.name, d.compute_capability, d.multiprocessors, gib(d.memory_bytes), gib(d.free_bytes),
            d.l2_bytes / 2 ^ 20, d.runtime_cuda, d.driver_cuda, d.supported and "" or "  [unsupported: apr needs 9.0+]"))
        if d.copy_bandwidth_gbs then
            io.stdout:write(string.format("   copy bandwidth %.0f GB/s (peak by datasheet %.0f GB/s)\n",
                d.copy_bandwidth_gbs, d.peak_bandwidth_gbs))
        end
    end
    return 0
end

return M
