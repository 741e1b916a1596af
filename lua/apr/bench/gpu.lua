-- bench/gpu.lua — what the GPU does while a system is measured: its
-- utilization, SM clock, temperature and power sampled through a run, and
-- the device memory the server's process holds.
--
-- The source is NVML through apr's FFI (runtime/core/nvml.c, which loads
-- the driver's libnvidia-ml.so.1 at run time), else `nvidia-smi` streaming
-- CSV, else none: without a GPU every figure is reported unavailable, with
-- the reason, never made up.
--
--   local mon = gpu.open(index)      -- mon.available, mon.reason, mon.source, mon.info
--   mon:begin({ pids })              -- starts sampling every PERIOD_MS
--   local w = mon:finish()           -- the window's figures (see finish)
--   mon:close()
local uv = require "luv"
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

M.PERIOD_MS = 100

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function which(name)
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
        local p = dir .. "/" .. name
        if uv.fs_access(p, "X") then return p end
    end
    return nil
end

------------------------------------------------------------------ a window

-- Folds samples into a window's figures.
local function new_window(pids)
    return { n = 0, util_sum = 0, util_n = 0, clock = {}, temp_max = nil, temp_sum = 0, temp_n = 0,
             power_sum = 0, power_n = 0, mem_used_max = nil, throttle = 0, pids = pids or {}, proc_peak = {},
             t0 = uv.hrtime() * 1e-9 }
end

local function add_sample(w, s)
    w.n = w.n + 1
    if s.util and s.util >= 0 then w.util_sum, w.util_n = w.util_sum + s.util, w.util_n + 1 end
    if s.util and s.util >= 0 then w.util_max = math.max(w.util_max or 0, s.util) end
    if s.sm_clock and s.sm_clock >= 0 then w.clock[#w.clock + 1] = s.sm_clock end
    if s.temp and s.temp >= 0 then
        w.temp_max = math.max(w.temp_max or s.temp, s.temp)
        w.temp_sum, w.temp_n = w.temp_sum + s.temp, w.temp_n + 1
    end
    if s.power_w and s.power_w >= 0 then w.power_sum, w.power_n = w.power_sum + s.power_w, w.power_n + 1 end
    if s.mem_used then w.mem_used_max = math.max(w.mem_used_max or 0, s.mem_used) end
    if s.throttle then w.throttle = bit.bor(w.throttle, s.throttle) end
end

-- The figures of a closed window: samples, utilization mean/max (%), SM
-- clock min/mean/max (MHz), temperature mean/max (C), power mean (W),
-- device memory used at most (bytes), NVML's throttle reason bits seen,
-- and per watched pid the most device memory it held.
local function window_figures(w)
    local f = { samples = w.n, seconds = uv.hrtime() * 1e-9 - w.t0 }
    if w.util_n > 0 then f.util_mean, f.util_max = w.util_sum / w.util_n, w.util_max end
    if #w.clock > 0 then
        local lo, hi, sum = math.huge, 0, 0
        for _, c in ipairs(w.clock) do lo, hi, sum = math.min(lo, c), math.max(hi, c), sum + c end
        f.sm_clock_min, f.sm_clock_max, f.sm_clock_mean = lo, hi, sum / #w.clock
    end
    if w.temp_n > 0 then f.temp_mean, f.temp_max = w.temp_sum / w.temp_n, w.temp_max end
    if w.power_n > 0 then f.power_mean_w = w.power_sum / w.power_n end
    f.mem_used_max = w.mem_used_max
    f.throttle_reasons = w.throttle
    f.process_mem_max = w.proc_peak
    return f
end

------------------------------------------------------------------ NVML

local Nvml = {}
Nvml.__index = Nvml

local function nvml_open(index)
    if C.apr_nvml_init() ~= 0 then return nil, ffi.string(C.apr_last_error()) end
    local n = C.apr_nvml_device_count()
    if index >= n then return nil, string.format("NVML sees %d GPU(s), no GPU %d", n, index) end
    local info = ffi.new("apr_gpu_info")
    if C.apr_nvml_device_info(index, info) ~= 0 then return nil, ffi.string(C.apr_last_error()) end
    local cuda = info.cuda_driver_version
    local self = setmetatable({
        available = true, source = "nvml", index = index,
        sample_box = ffi.new("apr_gpu_sample"), pid_box = ffi.new("uint32_t[256]"), bytes_box = ffi.new("int64_t[256]"),
        n_box = ffi.new("int[1]"),
        info = {
            name = ffi.string(info.name), uuid = ffi.string(info.uuid), driver = ffi.string(info.driver_version),
            cuda = cuda >= 0 and string.format("%d.%d", math.floor(cuda / 1000), (cuda % 1000) / 10) or nil,
            memory_total = tonumber(info.memory_total_bytes),
            sm_clock_max = info.sm_clock_max_mhz >= 0 and info.sm_clock_max_mhz or nil,
        },
    }, Nvml)
    return self
end

function Nvml:sample()
    local s = self.sample_box
    if C.apr_nvml_sample(self.index, s) ~= 0 then return nil end
    return { util = s.utilization_pct, sm_clock = s.sm_clock_mhz, temp = s.temperature_c,
             power_w = s.power_mw >= 0 and s.power_mw / 1000 or -1, mem_used = tonumber(s.memory_used_bytes),
             throttle = tonumber(s.throttle_reasons) }
end

-- { [pid] = bytes } of the compute processes (bytes nil where NVML cannot say).
function Nvml:processes()
    local n = self.n_box
    if C.apr_nvml_processes(self.index, self.pid_box, self.bytes_box, 256, n) ~= 0 then return nil end
    local out = {}
    for i = 0, math.min(n[0], 256) - 1 do
        local b = tonumber(self.bytes_box[i])
        out[tonumber(self.pid_box[i])] = b >= 0 and b or false
    end
    return out
end

------------------------------------------------------------------ nvidia-smi

local Smi = {}
Smi.__index = Smi

local SMI_FIELDS = "utilization.gpu,clocks.sm,temperature.gpu,power.draw,memory.used"

local function smi_number(v)
    return tonumber((v or ""):match("^%s*([%d.]+)"))
end

local function smi_open(index, exe)
    local p = io.popen(string.format("%s --query-gpu=name,uuid,driver_version,memory.total,clocks.max.sm " ..
        "--format=csv,noheader,nounits -i %d 2>&1", sh_quote(exe), index))
    local line = p and p:read("*l")
    if p then p:close() end
    local fields = {}
    for v in ((line or "") .. ","):gmatch("([^,]*),") do fields[#fields + 1] = v:match("^%s*(.-)%s*$") end
    if #fields < 5 or not smi_number(fields[4]) then
        return nil, "nvidia-smi failed: " .. tostring(line)
    end
    local cuda
    p = io.popen(sh_quote(exe) .. " 2>/dev/null")
    if p then
        cuda = (p:read("*a") or ""):match("CUDA Version: *([%d.]+)")
        p:close()
    end
    return setmetatable({
        available = true, source = "nvidia-smi", index = index, exe = exe, last = nil,
        info = { name = fields[1], uuid = fields[2], driver = fields[3], cuda = cuda,
                 memory_total = smi_number(fields[4]) * 2 ^ 20, sm_clock_max = smi_number(fields[5]) },
    }, Smi)
end

-- nvidia-smi samples itself (-lms): its lines are read as they come; the
-- newest one is the current sample.
function Smi:start_stream()
    if self.proc then return end
    local out = uv.new_pipe(false)
    local buf = ""
    self.proc = uv.spawn(self.exe, {
        args = { "--query-gpu=" .. SMI_FIELDS, "--format=csv,noheader,nounits", "-i", tostring(self.index),
                 "-lms", tostring(M.PERIOD_MS) },
        stdio = { nil, out, nil },
    }, function() self.proc_exited = true end)
    if not self.proc then return end
    self.pipe = out
    out:read_start(function(_, data)
        if not data then return end
        buf = buf .. data
        for line in buf:gmatch("([^\n]*)\n") do
            local f = {}
            for v in (line .. ","):gmatch("([^,]*),") do f[#f + 1] = v end
            if #f >= 5 then
                self.last = { util = smi_number(f[1]) or -1, sm_clock = smi_number(f[2]) or -1, temp = smi_number(f[3]) or -1,
                              power_w = smi_number(f[4]) or -1, mem_used = (smi_number(f[5]) or 0) * 2 ^ 20 }
            end
        end
        buf = buf:match("[^\n]*$")
    end)
end

function Smi:sample()
    self:start_stream()
    return self.last
end

function Smi:processes()
    local p = io.popen(string.format("%s --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -i %d 2>/dev/null",
        sh_quote(self.exe), self.index))
    if not p then return nil end
    local out = {}
    for line in p:lines() do
        local pid, mib = line:match("^%s*(%d+)%s*,%s*([%d.]+)")
        if pid then out[tonumber(pid)] = tonumber(mib) * 2 ^ 20 end
    end
    p:close()
    return out
end

function Smi:close_source()
    if self.proc and not self.proc_exited then self.proc:kill("sigterm") end
    if self.pipe and not self.pipe:is_closing() then self.pipe:close() end
    if self.proc and not self.proc:is_closing() then self.proc:close() end
    self.proc, self.pipe = nil, nil
end

------------------------------------------------------------------ the monitor

local Monitor = {}

-- begin{ pids = { pid, ... } }: starts a window; samples now and every
-- PERIOD_MS until finish.
function Monitor:begin(opts)
    local w = new_window(opts and opts.pids)
    self.window = w
    local function tick()
        local s = self:sample()
        if s then add_sample(w, s) end
        -- nvidia-smi's process query starts a process and waits for it,
        -- which would stall the loop that times the tokens: only NVML's
        -- is asked during the run, nvidia-smi's once at its end.
        if #w.pids > 0 and self.source == "nvml" then self:watch_processes(w) end
    end
    tick()
    self.timer = uv.new_timer()
    self.timer:start(M.PERIOD_MS, M.PERIOD_MS, tick)
end

function Monitor:watch_processes(w)
    local procs = self:processes()
    for _, pid in ipairs(w.pids) do
        local b = procs and procs[pid]
        if b then w.proc_peak[pid] = math.max(w.proc_peak[pid] or 0, b) end
    end
end

function Monitor:finish()
    if self.timer then
        self.timer:stop()
        self.timer:close()
        self.timer = nil
    end
    local w = self.window
    self.window = nil
    if not w then return nil end
    local s = self:sample()
    if s then add_sample(w, s) end
    if #w.pids > 0 then self:watch_processes(w) end
    return window_figures(w)
end

-- The device memory pid holds now (bytes), or nil and why.
function Monitor:process_memory(pid)
    local procs = self:processes()
    if not procs then return nil, "the driver gave no process list" end
    local b = procs[pid]
    if b == nil then return nil, "no GPU context of pid " .. tostring(pid) .. " in the driver's list" end
    if b == false then return nil, "the driver does not report per-process memory here" end
    return b
end

function Monitor:close()
    if self.timer then self:finish() end
    if self.close_source then self:close_source() end
end

for k, v in pairs(Monitor) do Nvml[k] = v; Smi[k] = v end

local Unavailable = { available = false }
Unavailable.__index = Unavailable
function Unavailable:begin() end
function Unavailable:finish() return nil end
function Unavailable:process_memory() return nil, self.reason end
function Unavailable:processes() return nil end
function Unavailable:close() end

-- open(index) -> a monitor of GPU index (NVML's numbering): NVML's, else
-- nvidia-smi's, else one that is not available and says why.
function M.open(index)
    index = index or 0
    local mon, why = nvml_open(index)
    if mon then return mon end
    local exe = which("nvidia-smi")
    if exe then
        local smi, swhy = smi_open(index, exe)
        if smi then return smi end
        why = why .. "; " .. swhy
    else
        why = why .. "; no nvidia-smi on PATH"
    end
    return setmetatable({ reason = why, info = nil }, Unavailable)
end

return M
