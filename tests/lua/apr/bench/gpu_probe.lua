-- gpu_probe.lua — prints what lua/apr/bench/gpu.lua sees, as JSON, for
-- gpu_spec.lua (a process of its own, so that APR_NVML_LIBRARY and PATH
-- are read fresh): the source, the card, a window of samples over ~300 ms,
-- and the device memory of the pid given as arg[1].
local json = require "apr.json"
local task = require "apr.bench.task"
local gpu = require "apr.bench.gpu"
local mon = gpu.open(0)
local out = { available = mon.available, source = mon.source or json.null, reason = mon.reason or json.null,
              info = mon.info or json.null }
if mon.available then
    local pid = tonumber(arg[1])
    task.run(function()
        mon:begin({ pids = pid and { pid } or {} })
        task.sleep(350)
        local w = mon:finish()
        out.window = { samples = w.samples, util_mean = w.util_mean, sm_clock_min = w.sm_clock_min,
                       sm_clock_max = w.sm_clock_max, temp_max = w.temp_max, power_mean_w = w.power_mean_w,
                       mem_used_max = w.mem_used_max, process_mem = pid and w.process_mem_max[pid] or json.null }
        local b, why = mon:process_memory(pid or -1)
        out.process_memory = b or json.null
        out.process_memory_why = why or json.null
    end)
end
mon:close()
print(json.encode(out))
