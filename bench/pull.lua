-- bench/pull.lua — apr pull's download speed on loopback, against the test
-- hub (tests/lua/apr/hub/test_hub.py), side by side in one run:
--
--   1. The hub caps every connection at --rate MiB/s (as CDNs cap a TCP
--      connection): the aggregate throughput of apr pull with 1, 4 and 8
--      connections, and its ratio to 1 connection (target: >= 3.5x at 4).
--   2. No cap: apr pull (8 connections, SHA-256 verified, fsync'd) beside
--      `curl -s -o` of the same URL into the same folder (target: >= 1x),
--      and beside curl followed by `sha256sum`, which verifies as apr does.
--
-- Each figure is the median of --runs runs, alternating the contenders;
-- times are the whole command (process start, hub metadata, download,
-- hash, rename). Files live in /dev/shm when it exists, so the disk is not
-- what is measured.
--
-- usage: apr run bench/pull.lua [--size MiB] [--big MiB] [--rate MiB/s] [--runs N]
local uv = require "luv"

local opts = { size = 128, big = 1024, rate = 16, runs = 3 }
local i = 1
while i <= #arg do
    local k = arg[i]:match("^%-%-(%w+)$")
    if not k or opts[k] == nil or not tonumber(arg[i + 1]) then
        io.stderr:write("usage: apr run bench/pull.lua [--size MiB] [--big MiB] [--rate MiB/s] [--runs N]\n")
        os.exit(2)
    end
    opts[k] = tonumber(arg[i + 1])
    i = i + 2
end

local MiB = 1024 * 1024
local APR = (rawget(_G, "APR_HOME") or ".") .. "/apr"
local HUB = (rawget(_G, "APR_HOME") or ".") .. "/tests/lua/apr/hub/test_hub.py"

-- sh(cmd) -> output, whether it exited 0.
local function sh(cmd)
    local p = assert(io.popen(cmd .. "; echo \"exit=$?\""))
    local out = p:read("*a")
    p:close()
    local code = tonumber(out:match("exit=(%d+)%s*$"))
    return (out:gsub("exit=%d+%s*$", "")), code == 0
end

local base = (uv.fs_stat("/dev/shm") and "/dev/shm" or "/tmp") .. "/apr-bench-pull-" .. uv.os_getpid()
local root = base .. "/root/bench/Bench-GGUF"
assert(os.execute("mkdir -p '" .. root .. "'") == 0)
local function cleanup() os.execute("rm -rf '" .. base .. "'") end

io.stderr:write(string.format("writing %d MiB and %d MiB of test data in %s ...\n", opts.size, opts.big, base))
for name, mib in pairs({ ["small-Q4_K_M.gguf"] = opts.size, ["big-Q8_0.gguf"] = opts.big }) do
    local _, ok = sh(string.format("head -c %d /dev/urandom > '%s/%s'", mib * MiB, root, name))
    assert(ok, "cannot write the test data")
end

local pid = tonumber(sh(string.format("python3 %s --root '%s/root' --port-file '%s/port' >'%s/hub.log' 2>&1 & echo $!",
    HUB, base, base, base)):match("%d+"))
local port
for _ = 1, 600 do
    local f = io.open(base .. "/port", "rb")
    if f then port = tonumber(f:read("*a")); f:close() end
    if port then break end
    uv.sleep(50)
end
if not port then cleanup() error("the test hub did not start") end
local url = "http://127.0.0.1:" .. port

local function faults(json)
    local f = assert(io.open(base .. "/faults.json", "wb"))
    f:write(json)
    f:close()
    sh(string.format("curl -s -X POST %s/_hub/faults --data-binary @'%s/faults.json'", url, base))
end

-- GNU time gives each command's CPU seconds (user + system), which say
-- where a slower wall time comes from on a busy machine.
local GNU_TIME = uv.fs_stat("/usr/bin/time") and "/usr/bin/time -f 'cpu %U %S' " or ""

-- timed(cmd) -> wall seconds, CPU seconds (or nil), output.
local function timed(cmd)
    local t0 = uv.hrtime()
    local out, ok = sh(GNU_TIME .. cmd .. " 2>&1")
    local s = (uv.hrtime() - t0) * 1e-9
    if not ok then
        os.execute("kill " .. pid)
        cleanup()
        error("failed: " .. cmd .. "\n" .. out)
    end
    local u, k = out:match("cpu ([%d.]+) ([%d.]+)%s*$")
    return s, u and (tonumber(u) + tonumber(k)), out
end

local function pull(ref, conns)
    local cache = base .. "/cache"
    os.execute("rm -rf '" .. cache .. "'")
    return timed(string.format("env HF_ENDPOINT=%s HF_HUB_CACHE='%s' %s pull %s --connections %d --quiet",
        url, cache, APR, ref, conns))
end

local median = require("apr.bench.stats").median

-- 1. Capped connections.
faults(string.format('[{"kind": "rate", "bps": %d, "times": -1}]', opts.rate * MiB))
local capped = {}
for _, n in ipairs({ 1, 4, 8 }) do capped[n] = {} end
for _ = 1, opts.runs do
    for _, n in ipairs({ 1, 4, 8 }) do
        capped[n][#capped[n] + 1] = pull("bench/Bench-GGUF:Q4_K_M", n)
    end
end

-- 2. Uncapped: apr beside curl -o of the CDN URL the hub redirects to.
faults("[]")
local loc = sh(string.format("curl -sI %s/bench/Bench-GGUF/resolve/main/big-Q8_0.gguf", url))
    :match("[Ll]ocation: ([^\r\n]+)")
local apr_t, curl_t, sum_t, cpus = {}, {}, {}, { apr = {}, curl = {}, sum = {} }
for _ = 1, opts.runs do
    local s, c = pull("bench/Bench-GGUF:Q8_0", 8)
    apr_t[#apr_t + 1], cpus.apr[#cpus.apr + 1] = s, c
    os.remove(base .. "/curl.out")
    s, c = timed(string.format("curl -s -o '%s/curl.out' '%s'", base, loc))
    curl_t[#curl_t + 1], cpus.curl[#cpus.curl + 1] = s, c
    local s2, c2 = timed(string.format("sha256sum '%s/curl.out'", base))
    sum_t[#sum_t + 1], cpus.sum[#cpus.sum + 1] = s + s2, c and c2 and c + c2
    os.remove(base .. "/curl.out")
end
os.execute("kill " .. pid)
cleanup()

local cpu = sh("grep -m1 'model name' /proc/cpuinfo"):match(":%s*(.-)%s*$") or "?"
local nproc = sh("nproc"):match("%d+") or "?"
local load = sh("cat /proc/loadavg"):match("^(%S+)") or "?"
print(string.format("\napr pull on loopback (%s, %s CPUs, load average %s), median of %d runs", cpu, nproc, load,
    opts.runs))
print(string.format("\n1. each connection capped at %d MiB/s, %d MiB file", opts.rate, opts.size))
print("connections  seconds   MiB/s   vs 1 connection")
local one = opts.size / median(capped[1])
for _, n in ipairs({ 1, 4, 8 }) do
    local s = median(capped[n])
    print(string.format("%11d  %7.2f  %6.1f   %.2fx", n, s, opts.size / s, opts.size / s / one))
end
print(string.format("\n2. no cap, %d MiB file", opts.big))
print("tool                          seconds   GB/s   vs curl" .. (GNU_TIME ~= "" and "   CPU s" or ""))
local a, c, v = median(apr_t), median(curl_t), median(sum_t)
local gb = opts.big * MiB / 1e9
local function cpu_text(list)
    if #list < opts.runs then return "" end
    return string.format("   %5.2f", median(list))
end
print(string.format("%-28s  %7.2f  %5.2f   %.2fx%s", "apr pull (8 conn., SHA-256)", a, gb / a, c / a, cpu_text(cpus.apr)))
print(string.format("%-28s  %7.2f  %5.2f   1.00x%s", "curl -s -o", c, gb / c, cpu_text(cpus.curl)))
print(string.format("%-28s  %7.2f  %5.2f   %.2fx%s", "curl -s -o, then sha256sum", v, gb / v, c / v,
    cpu_text(cpus.sum)))
