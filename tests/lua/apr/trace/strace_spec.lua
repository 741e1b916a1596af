-- strace_spec.lua — reading strace's log: calls split by other threads,
-- errors, descriptors' paths; and the counts of a real run against the
-- count table strace itself prints for that run (-C).
local strace = require "apr.trace.strace"
local groups = require "apr.trace.groups"
local h = require "tests.lua.helpers"

local function lines(text) return text:gmatch("[^\n]+") end

local LOG = [[
101  1700000000.000100 openat(AT_FDCWD</work>, "m.gguf", O_RDONLY|O_CLOEXEC) = 3</work/m.gguf> <0.000010>
101  1700000000.000200 read(3</work/m.gguf>, ""..., 4096) = 4096 <0.000005>
102  1700000000.000300 futex(0x7f00, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
101  1700000000.000400 openat(AT_FDCWD</work>, "missing", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000004>
101  1700000000.000500 ioctl(5</dev/nvidiactl>, _IOC(_IOC_READ|_IOC_WRITE, 0x46, 0x2a, 0x20), 0x7ffd) = 0 <0.000020>
101  1700000000.000600 recvfrom(7<socket:[4242]>, ""..., 65536, 0, NULL, NULL) = 17 <0.000003>
101  1700000000.000610 read(7<socket:[4242]>, ""..., 65536) = 0 <0.000002>
102  1700000000.002300 <... futex resumed>) = 0 <0.002000>
101  1700000000.002400 --- SIGINT {si_signo=SIGINT, si_code=SI_KERNEL} ---
101  1700000000.002500 rt_sigreturn({mask=[]}) = 0 <0.000003>
102  1700000000.003000 futex(0x7f08, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
101  1700000000.003100 exit_group(0)           = ?
101  1700000000.003200 +++ exited with 0 +++
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 80.00    0.002000        2000         1           futex
 10.00    0.000020          20         1           ioctl
------ ----------- ----------- --------- --------- ------------------
100.00    0.002020          30        10         1 total
]]

describe("apr.trace.strace", function()
    it("reads calls, joins calls split by other threads, keeps errors and fd paths", function()
        local calls = strace.parse(lines(LOG))
        assert.equal(10, #calls)
        local by = {}
        for _, c in ipairs(calls) do
            by[c.name] = by[c.name] or {}
            table.insert(by[c.name], c)
        end
        assert.equal(2, #by.openat)
        assert.equal("/work/m.gguf", by.read[1].path)
        assert.equal("ENOENT", by.openat[2].err)
        -- the futex split across lines: from its start, its whole duration
        local f = by.futex[1]
        assert.equal(102, f.tid)
        assert.near(1700000000.0003, f.ts, 1e-6)
        assert.near(0.002, f.dur, 1e-9)
        assert.equal("0", f.ret)
        -- unfinished at the end: counted, no duration
        assert.equal(2, #by.futex)
        assert.equal(0, by.futex[2].dur)
        assert.equal("?", by.exit_group[1].ret)
        for i = 2, #calls do assert.is_true(calls[i].ts >= calls[i - 1].ts) end
    end)

    it("groups calls by kind, the descriptor deciding for read and ioctl", function()
        assert.equal("file/mmap", groups.syscall("openat", nil))
        assert.equal("file/mmap", groups.syscall("mmap", nil))
        assert.equal("file/mmap", groups.syscall("read", "/work/m.gguf"))
        assert.equal("network", groups.syscall("read", "socket:[4242]"))
        assert.equal("network", groups.syscall("accept4", nil))
        assert.equal("network", groups.syscall("epoll_wait", nil))
        assert.equal("futex", groups.syscall("futex", nil))
        assert.equal("GPU driver ioctl", groups.syscall("ioctl", "/dev/nvidiactl"))
        assert.equal("GPU driver ioctl", groups.syscall("ioctl", "/dev/nvidia0"))
        assert.equal("file/mmap", groups.syscall("ioctl", "/dev/pts/0"))
        assert.equal("other", groups.syscall("getpid", nil))
    end)

    it("reads the count table of -c and -C", function()
        local t = strace.table(lines(LOG))
        assert.same({ futex = 1, ioctl = 1, total = 10 }, t)
    end)

    it("counts a real run's syscalls as strace -C does for that run (within 5%)", function()
        if not strace.find() then return pending("strace is not installed (make deps)") end
        local dir = h.tmpdir()
        local r = h.apr("trace --syscalls -o " .. dir .. " -- apr pass tests/fixtures/models/tiny-q8_0.gguf " ..
            "--raw --max-tokens 8 --ignore-eos --prompt hello")
        assert.equal(0, r.code, r.err)
        local f = assert(io.open(dir .. "/strace.log"))
        local text = f:read("*a")
        f:close()
        local calls = strace.parse(lines(text))
        local table_counts = strace.table(lines(text))
        assert.is_true((table_counts.total or 0) > 100, "strace's table: " .. tostring(table_counts.total))
        local ours = {}
        for _, c in ipairs(calls) do ours[c.name] = (ours[c.name] or 0) + 1 end
        -- strace's table leaves out calls that never returned (exit_group)
        local n = #calls - (ours.exit_group or 0)
        assert.is_true(math.abs(n - table_counts.total) <= 0.05 * table_counts.total,
            string.format("%d calls read, strace counted %d", n, table_counts.total))
        for name, count in pairs(table_counts) do
            if name ~= "total" then
                local mine = ours[name] or 0
                assert.is_true(math.abs(mine - count) <= math.max(1, 0.05 * count),
                    string.format("%s: %d read, strace counted %d", name, mine, count))
            end
        end
        -- the report has them too
        local j = h.read_file(dir .. "/summary.json")
        assert.truthy(j:find('"syscalls":' .. #calls, 1, true), j:sub(1, 300))
        h.rmtree(dir)
    end)
end)
