-- stacks.lua — a trace's events as the semantic tree and as folded stacks.
--
-- Input: the events of a Chrome trace (apr.trace.report.load), X events
-- with ts and dur in microseconds. Output: a tree whose every node has a
-- name, a value (µs), a count and its children, rooted at "all" with the
-- groups of apr.trace.groups under it:
--   GPU kernels;matmul;gemv_segs<...>       the kernel's run time
--   Memory;model load;weights upload         a memory span's own time
--   CPU;main;apr pass;decode step;forward    a span's self time (what its
--                                            children do is theirs)
--   Syscalls;futex;futex                     time inside the call
--   Requests;POST /v1/chat/completions       start to last byte
-- A node's value is the sum of its children's plus its own; the folded
-- stacks (flamegraph.pl / inferno input) are the leaves' paths with their
-- own values in whole microseconds.
local groups = require "apr.trace.groups"

local M = {}

local function node(name)
    return { name = name, value = 0, self = 0, count = 0, children = {}, order = {} }
end

local function child(n, name)
    local c = n.children[name]
    if not c then
        c = node(name)
        n.children[name] = c
        n.order[#n.order + 1] = name
    end
    return c
end

-- Adds `value` µs at path (a list of names) under root, counting one
-- occurrence at the leaf.
local function add(root, path, value, count)
    local n = root
    n.value = n.value + value
    for i = 1, #path do
        n = child(n, path[i])
        n.value = n.value + value
    end
    n.self = n.self + value
    n.count = n.count + (count or 1)
end

-- Folded-stack frames may not hold ';' (the separator) or line breaks.
local function frame(s)
    return (tostring(s):gsub("[;\r\n]", " "))
end

-- The CPU spans of one thread: nest them by time (children lie inside
-- their parents: the runtime matched begin and end), then give each its
-- self time at its path.
local function add_thread(root, spans, thread)
    table.sort(spans, function(a, b)
        if a.ts ~= b.ts then return a.ts < b.ts end
        return a.dur > b.dur
    end)
    local stack = {}
    for _, e in ipairs(spans) do
        while #stack > 0 do
            local top = stack[#stack]
            if e.ts + e.dur <= top.ts + top.dur + 1e-3 and e.ts >= top.ts then break end
            stack[#stack] = nil
        end
        local parent = stack[#stack]
        e.parent = parent
        e.inner = 0
        if parent then parent.inner = parent.inner + e.dur end
        stack[#stack + 1] = e
    end
    for _, e in ipairs(spans) do
        local names = {}
        local p = e
        while p do
            table.insert(names, 1, frame(p.name))
            p = p.parent
        end
        -- the outermost memory span and what it encloses go under Memory
        local first
        for i = 1, #names do
            if groups.memory_span(names[i]) then
                first = i
                break
            end
        end
        local path = first and { "Memory" } or { "CPU", frame(thread) }
        for i = first or 1, #names do path[#path + 1] = names[i] end
        local self = e.dur - e.inner
        if self < 0 then self = 0 end
        add(root, path, self)
    end
end

-- build(trace) -> the tree. trace: { events = {...}, threads = { [tid] = name } }.
function M.build(trace)
    local root = node("all")
    for _, g in ipairs(groups.TOP) do child(root, g) end
    local per_thread = {}
    for _, e in ipairs(trace.events) do
        local cat = e.cat
        if cat == "kernel" then
            add(root, { "GPU kernels", groups.kernel(e.name), frame(e.name) }, e.dur)
        elseif cat == "memcpy" or cat == "memset" then
            add(root, { "GPU kernels", "copies", frame(e.name) }, e.dur)
        elseif cat == "syscall" then
            add(root, { "Syscalls", e.group or groups.syscall(e.name, e.path), frame(e.name) }, e.dur)
        elseif cat == "request" or (cat == "span" and e.lane) then
            add(root, { "Requests", frame(e.name) }, e.dur)
        elseif cat == "span" then
            local list = per_thread[e.tid]
            if not list then
                list = {}
                per_thread[e.tid] = list
            end
            list[#list + 1] = e
        end
    end
    local tids = {}
    for tid in pairs(per_thread) do tids[#tids + 1] = tid end
    table.sort(tids)
    for _, tid in ipairs(tids) do
        add_thread(root, per_thread[tid], trace.threads[tid] or ("thread " .. tid))
    end
    -- empty groups go: the flamegraph shows what happened
    local order = {}
    for _, name in ipairs(root.order) do
        if root.children[name].value > 0 then order[#order + 1] = name else root.children[name] = nil end
    end
    root.order = order
    return root
end

-- folded(tree) -> the text of folded stacks, one "a;b;c N" line per leaf
-- (and per node with time of its own), N in whole microseconds, sorted.
function M.folded(root)
    local lines = {}
    local function walk(n, prefix)
        local path = prefix == "" and n.name or (prefix .. ";" .. n.name)
        local us = math.floor(n.self + 0.5)
        if us > 0 then lines[#lines + 1] = path .. " " .. us end
        for _, name in ipairs(n.order) do walk(n.children[name], path) end
    end
    -- the root "all" is not a frame of its own
    for _, name in ipairs(root.order) do walk(root.children[name], "") end
    table.sort(lines)
    return table.concat(lines, "\n") .. (#lines > 0 and "\n" or "")
end

return M
