-- stacks_spec.lua — events to the semantic tree and folded stacks: nesting
-- and self time, the groups, and a flamegraph tool reading the result.
local stacks = require "apr.trace.stacks"
local groups = require "apr.trace.groups"
local h = require "tests.lua.helpers"

local PYTHON = ".cache/pyenv/bin/python"
local ORACLE = "tests/lua/apr/trace/trace_oracle.py"

local function X(tid, name, ts, dur, cat) return { tid = tid, name = name, ts = ts, dur = dur, cat = cat or "span" } end

-- main: apr pass [0,1000) > model load [0,100) > weights upload [10,60);
--       decode step [200,300) > forward [210,290) > device wait [250,290)
-- engine: engine step [0,50) > schedule [0,5)
local function sample_trace()
    return {
        threads = { [1] = "main", [2] = "engine" },
        meta = { duration_us = 1000 },
        events = {
            X(1, "device wait", 250, 40), X(1, "forward", 210, 80), X(1, "decode step", 200, 100),
            X(1, "weights upload", 10, 50), X(1, "model load", 0, 100), X(1, "apr pass", 0, 1000),
            X(2, "schedule", 0, 5), X(2, "engine step", 0, 50),
            X(1000000000, "gemv_segs<4>", 220, 30, "kernel"), X(1000000000, "attn_decode<128>", 250, 10, "kernel"),
            X(1000000000, "rmsnorm_q8", 260, 2, "kernel"), X(1000000000, "argmax_rows", 262, 1, "kernel"),
            X(1000000000, "H2D copy", 205, 3, "memcpy"), X(1000000000, "mystery_kernel", 263, 4, "kernel"),
            X(1500000001, "futex", 300, 20, "syscall"),
            X(4194305, "HTTP POST /v1/completions", 0, 900, "span"),
        },
    }
end

local function find(n, path)
    for name in path:gmatch("[^;]+") do
        n = n.children[name]
        if not n then return nil end
    end
    return n
end

describe("apr.trace.stacks", function()
    it("nests spans by time and gives each its self time", function()
        local t = sample_trace()
        for _, e in ipairs(t.events) do if e.tid == 4194305 then e.lane = true end end
        local tree = stacks.build(t)
        assert.equal(800, find(tree, "CPU;main;apr pass").self)              -- 1000 - 100 (load) - 100 (step)
        assert.equal(20, find(tree, "CPU;main;apr pass;decode step").self)    -- 100 - 80
        assert.equal(40, find(tree, "CPU;main;apr pass;decode step;forward").self)
        assert.equal(40, find(tree, "CPU;main;apr pass;decode step;forward;device wait").self)
        assert.equal(45, find(tree, "CPU;engine;engine step").self)
        -- memory spans leave the CPU stacks with what they enclose
        assert.is_nil(find(tree, "CPU;main;apr pass;model load"))
        assert.equal(50, find(tree, "Memory;model load").self)
        assert.equal(50, find(tree, "Memory;model load;weights upload").self)
        assert.equal(100, find(tree, "Memory").value)
        -- kernels by group, copies beside them
        assert.equal(30, find(tree, "GPU kernels;matmul;gemv_segs<4>").value)
        assert.equal(10, find(tree, "GPU kernels;attention").value)
        assert.equal(2, find(tree, "GPU kernels;norm/rope").value)
        assert.equal(1, find(tree, "GPU kernels;sampling").value)
        assert.equal(3, find(tree, "GPU kernels;copies;H2D copy").value)
        assert.equal(4, find(tree, "GPU kernels;other;mystery_kernel").value)
        assert.equal(20, find(tree, "Syscalls;futex;futex").value)
        assert.equal(900, find(tree, "Requests;HTTP POST /v1/completions").value)
        -- a parent's value is its children's plus its own
        local function check(n)
            local sum = n.self
            for _, name in ipairs(n.order) do sum = sum + check(n.children[name]) end
            assert.near(n.value, sum, 1e-9)
            return n.value
        end
        check(tree)
    end)

    it("groups kernels by their function names", function()
        assert.equal("matmul", groups.kernel("gemv_mma<4, 128>"))
        assert.equal("matmul", groups.kernel("gemm_q<(apr_dtype)12>"))
        assert.equal("matmul", groups.kernel("splitk_reduce"))
        assert.equal("matmul", groups.kernel("gemv_swiglu<2>"))
        assert.equal("attention", groups.kernel("attn_combine<128>"))
        assert.equal("norm/rope", groups.kernel("rmsnorm_f16"))
        assert.equal("norm/rope", groups.kernel("rope_store<2>"))
        assert.equal("sampling", groups.kernel("argmax_rows"))
        assert.equal("copies", groups.kernel("embed_rows<12>"))
        assert.equal("copies", groups.kernel("gather_rows"))
        assert.equal("other", groups.kernel("something_else"))
    end)

    it("writes folded stacks: one line per frame with time of its own, whole µs, no stray separators", function()
        local t = sample_trace()
        t.events[#t.events + 1] = X(1, "odd;name\nhere", 400, 10)
        local folded = stacks.folded(stacks.build(t))
        local total = 0
        for line in folded:gmatch("[^\n]+") do
            local path, n = line:match("^(.+) (%d+)$")
            assert.truthy(path, line)
            total = total + tonumber(n)
            assert.is_nil(path:find("\n"))
        end
        assert.truthy(folded:find("CPU;main;apr pass;decode step;forward 40\n", 1, true))
        assert.truthy(folded:find("CPU;main;apr pass;odd name here 10\n", 1, true))
        assert.equal(0, #folded:gsub("[^\n]", "") - select(2, folded:gsub("\n", "")))
        assert.is_true(total > 0)
    end)

    it("loads in a flamegraph tool with the same totals (flamegraph-textual)", function()
        if not io.open(PYTHON) then return pending("the test venv is missing (scripts/pyenv.sh)") end
        local dir = h.tmpdir()
        local tree = stacks.build(sample_trace())
        local f = assert(io.open(dir .. "/t.folded", "wb"))
        f:write(stacks.folded(tree))
        f:close()
        local p = assert(io.popen(string.format("%s %s folded %s 2>&1", PYTHON, ORACLE, dir .. "/t.folded")))
        local out = p:read("*a")
        p:close()
        local doc = require("cjson").decode(out)
        assert.equal(math.floor(tree.value + 0.5), doc.total, out)
        local names = {}
        for _, c in ipairs(doc.root.children) do names[c.name] = c.value end
        assert.equal(100, names.Memory)
        assert.equal(50, names["GPU kernels"])
        h.rmtree(dir)
    end)
end)
