-- strace.lua — every thread's syscalls, from Debian's strace.
--
-- Why strace and not a tracer of apr's own over ptrace: strace already
-- decodes every syscall of every architecture, follows threads and forks
-- (-f), times each call (-T) and names the file behind each descriptor (-y:
-- the GPU driver's /dev/nvidia* ioctls, sockets), and it is a well-kept
-- Debian package. A ptrace loop written here would repeat all of that and
-- pay the same two stops per syscall. What apr adds is reading its output
-- into the trace, on the same clock as the spans.
--
-- The command it runs:
--   strace -f -C -ttt -T -y -s 0 -qq -I 3 -o FILE -- apr COMMAND ...
-- -C: strace's own count table (what `strace -c` prints) follows the calls
-- in FILE, so the counts read here can be checked against it (M.table).
-- -ttt: wall-clock seconds with microseconds (CLOCK_REALTIME; the trace's
-- otherData.start_realtime_ns aligns them); -s 0: no string contents (the
-- output stays small); -I 3: Ctrl+C reaches apr (which stops cleanly and
-- writes its trace) instead of killing strace.
local M = {}

function M.args(out_file)
    return { "-f", "-C", "-ttt", "-T", "-y", "-s", "0", "-qq", "-I", "3", "-o", out_file, "--" }
end

-- Where strace is, or nil.
function M.find()
    for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
        local p = dir .. "/strace"
        local f = io.open(p, "rb")
        if f then
            f:close()
            return p
        end
    end
    return nil
end

-- The end of a finished call: " = RET <DUR>" (DUR absent for exit_group's "= ?").
local function result(tail)
    local ret, dur = tail:match("%)%s+=%s+(.-)%s+<(%d+%.%d+)>%s*$")
    if not ret then
        ret = tail:match("%)%s+=%s+(.-)%s*$")
        dur = "0"
    end
    if not ret then return nil end
    local err = ret:match("^%-1 (E%u[%u%d]*)") or ret:match("^%? (E%u[%u%d]*)")
    return ret, tonumber(dur), err
end

-- The path of the first argument's descriptor, as -y prints it: fd<path>.
local function fd_path(args)
    return args:match("^%-?%d+<(.-)>[,)]") or args:match("^%-?%d+<(.-)>$")
end

-- parse(lines iterator) -> array of { tid, name, ts (s, CLOCK_REALTIME),
-- dur (s), ret (text), err (errno name or nil), path (the first fd's) }.
-- A call interrupted by another thread's output ("<unfinished ...>", then
-- "<... NAME resumed>") counts once, from its start to its end.
function M.parse(lines)
    local out, pending = {}, {}
    for line in lines do
        if line:find("^%% time") then break end  -- -C's table: the calls are over
        local tid, ts, rest = line:match("^(%d+)%s+(%d+%.%d+)%s+(.*)$")
        if not tid then
            tid = "0"
            ts, rest = line:match("^(%d+%.%d+)%s+(.*)$")
        end
        if ts and rest:sub(1, 3) ~= "---" and rest:sub(1, 3) ~= "+++" then
            local rname, tail = rest:match("^<%.%.%. ([%w_]+) resumed>(.*)$")
            if rname then
                local p = pending[tid]
                pending[tid] = nil
                local ret, dur, err = result(tail)
                if ret then
                    out[#out + 1] = { tid = tonumber(tid), name = rname, ts = p and p.ts or tonumber(ts),
                                      ret = ret, err = err, path = p and p.path, dur = dur }  -- -T: the whole call
                end
            else
                local name, args = rest:match("^([%w_]+)%((.*)$")
                if name then
                    if args:find("<unfinished %.%.%.>%s*$") then
                        pending[tid] = { ts = tonumber(ts), path = fd_path(args), name = name }
                    else
                        local ret, dur, err = result(args)
                        if ret then
                            out[#out + 1] = { tid = tonumber(tid), name = name, ts = tonumber(ts), dur = dur,
                                              ret = ret, err = err, path = fd_path(args) }
                        end
                    end
                end
            end
        end
    end
    -- calls still unfinished when the process ended (exit_group, a killed thread's last futex)
    for tid, p in pairs(pending) do
        out[#out + 1] = { tid = tonumber(tid), name = p.name, ts = p.ts, dur = 0, ret = "?", path = p.path }
    end
    table.sort(out, function(a, b) return a.ts < b.ts end)
    return out
end

-- table(lines) -> { [syscall] = calls, total = n }: the count table -c or
-- -C prints ("% time  seconds  usecs/call  calls  errors  syscall").
function M.table(lines)
    local counts, inside = {}, false
    for line in lines do
        if line:find("^%% time") then
            inside = true
        elseif inside then
            local calls, name = line:match("^%s*[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*([%w_]+)%s*$")
            if calls then counts[name] = tonumber(calls) end
        end
    end
    return counts
end

function M.parse_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local calls = M.parse(f:lines())
    f:close()
    return calls
end

return M
