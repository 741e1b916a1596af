-- gpu_spec.lua — lua/apr/bench/gpu.lua's three sources: NVML (through the
-- fake libnvidia-ml.so.1 of tests/fixtures/nvml), nvidia-smi (a stand-in
-- script that answers its queries as the real one formats them), and none
-- (every figure unavailable, with the reasons).
local h = require "tests.lua.helpers"
local json = require "apr.json"

local FAKE_NVML = h.root .. "/build/fake-nvml/libnvidia-ml.so.1"

local function probe(env, pid)
    local out = os.tmpname()
    os.execute(string.format("%s %s run tests/lua/apr/bench/gpu_probe.lua %s >%s 2>&1", env, h.apr_bin, pid or "", out))
    local text = h.read_file(out)
    os.remove(out)
    local v = json.decode(text)
    assert(type(v) == "table", "gpu_probe.lua said: " .. text)
    return v
end

-- An nvidia-smi that answers as the real one does (csv,noheader,nounits).
local SMI = [[#!/bin/sh
case "$*" in
  *--query-gpu=name,uuid*) echo "NVIDIA H100 80GB HBM3, GPU-1234, 550.54.15, 81559, 1980" ;;
  *--query-compute-apps*) echo "4242, 20480"; echo "99, 1024" ;;
  *-lms*) while :; do echo "93, 1755, 64, 412.50, 30000"; sleep 0.05; done ;;
  *) echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4 |" ;;
esac
]]

describe("bench GPU sampling", function()
    it("reads NVML through the FFI: the card, a window of samples, a process's memory", function()
        local procs = os.tmpname()
        local f = assert(io.open(procs, "w"))
        f:write("4242 21474836480\n")
        f:close()
        local v = probe(string.format("APR_NVML_LIBRARY=%s FAKE_NVML_PROCESSES=%s", FAKE_NVML, procs), 4242)
        os.remove(procs)
        assert.is_true(v.available, tostring(v.reason))
        assert.equal("nvml", v.source)
        assert.equal("Fake GPU (apr tests)", v.info.name)
        assert.equal("12.4", v.info.cuda)
        assert.equal(1980, v.info.sm_clock_max)
        assert.is_true(v.window.samples >= 3, "samples: " .. v.window.samples)
        assert.equal(87, v.window.util_mean)
        assert.equal(1755, v.window.sm_clock_min)
        assert.equal(61, v.window.temp_max)
        assert.equal(350, v.window.power_mean_w)
        assert.equal(21474836480, v.window.process_mem)
        assert.equal(21474836480, v.process_memory)
    end)

    it("falls back to nvidia-smi when NVML cannot be loaded", function()
        local dir = h.tmpdir()
        local f = assert(io.open(dir .. "/nvidia-smi", "w"))
        f:write(SMI)
        f:close()
        os.execute("chmod 755 " .. dir .. "/nvidia-smi")
        local v = probe(string.format("APR_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1 PATH=%s:$PATH", dir), 4242)
        h.rmtree(dir)
        assert.is_true(v.available, tostring(v.reason))
        assert.equal("nvidia-smi", v.source)
        assert.equal("NVIDIA H100 80GB HBM3", v.info.name)
        assert.equal("550.54.15", v.info.driver)
        assert.equal("12.4", v.info.cuda)
        assert.equal(81559 * 2 ^ 20, v.info.memory_total)
        assert.equal(93, v.window.util_mean)
        assert.equal(1755, v.window.sm_clock_max)
        assert.equal(64, v.window.temp_max)
        assert.equal(412.5, v.window.power_mean_w)
        assert.equal(20480 * 2 ^ 20, v.process_memory)
    end)

    it("reports no GPU as unavailable, with both reasons", function()
        local v = probe("APR_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1 PATH=/nonexistent")
        assert.is_false(v.available)
        assert.truthy(v.reason:find("NVML unavailable", 1, true), v.reason)
        assert.truthy(v.reason:find("nvidia-smi", 1, true), v.reason)
    end)
end)
