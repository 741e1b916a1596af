-- trace_spec.lua — `apr trace` and `--trace DIR`: the outputs of a real run,
-- the trace-event format, exit codes passing through, usage errors, and a
-- server's requests in its trace.
local h = require "tests.lua.helpers"
local cjson = require "cjson"

local TINY = "tests/fixtures/models/tiny-q8_0.gguf"
local PYTHON = ".cache/pyenv/bin/python"
local ORACLE = "tests/lua/apr/trace/trace_oracle.py"
local GEN = " --raw --max-tokens 8 --ignore-eos --prompt 'fn main() {'"

-- Checks a Chrome trace against the trace-event format: every event has
-- ph, pid, tid (integers), X events a name, ts and dur >= 0, M events a
-- name in args; on each track X events nest (no two overlap partly).
-- Returns the X events.
local function validate(doc)
    assert.equal("table", type(doc.traceEvents))
    local xs, tracks = {}, {}
    for i, e in ipairs(doc.traceEvents) do
        local where = "event " .. i .. ": " .. cjson.encode(e)
        assert.equal("string", type(e.ph), where)
        assert.is_true(e.pid == math.floor(e.pid) and e.tid == math.floor(e.tid), where)
        assert.is_true(e.tid >= 0 and e.tid < 2 ^ 31, where)
        if e.ph == "X" then
            assert.equal("string", type(e.name), where)
            assert.equal("number", type(e.ts), where)
            assert.is_true(type(e.dur) == "number" and e.dur >= 0, where)
            xs[#xs + 1] = e
            tracks[e.tid] = tracks[e.tid] or {}
            table.insert(tracks[e.tid], e)
        elseif e.ph == "M" then
            assert.truthy(e.name == "thread_name" or e.name == "process_name", where)
            assert.equal("string", type(e.args.name), where)
        else
            error("unexpected phase " .. where)
        end
    end
    for tid, list in pairs(tracks) do
        table.sort(list, function(a, b) return a.ts < b.ts or (a.ts == b.ts and a.dur > b.dur) end)
        local stack = {}
        for _, e in ipairs(list) do
            while #stack > 0 and e.ts >= stack[#stack].ts + stack[#stack].dur - 1e-3 do stack[#stack] = nil end
            local top = stack[#stack]
            if top then
                assert.is_true(e.ts + e.dur <= top.ts + top.dur + 1e-3,
                    string.format("track %d: %s [%g, +%g] overlaps %s [%g, +%g]", tid, e.name, e.ts, e.dur, top.name,
                        top.ts, top.dur))
            end
            stack[#stack + 1] = e
        end
    end
    return xs
end

local function load(path)
    return cjson.decode(h.read_file(path))
end

describe("apr trace", function()
    it("runs the command and writes the trace, its flamegraph, folded stacks and summary", function()
        local dir = h.tmpdir()
        local plain = h.apr("pass " .. TINY .. GEN)
        local r = h.apr("trace -o " .. dir .. "/out -- apr pass " .. TINY .. GEN)
        assert.equal(0, r.code, r.err)
        assert.equal(plain.out, r.out)          -- the command's output passes through untouched
        assert.truthy(r.err:find("apr trace of `apr pass", 1, true), r.err)
        assert.truthy(r.err:find("decode steps: 7", 1, true), r.err)
        for _, f in ipairs({ "trace.json", "trace.folded", "trace.svg", "summary.txt", "summary.json" }) do
            assert.is_true(#h.read_file(dir .. "/out/" .. f) > 0, f)
        end
        local doc = load(dir .. "/out/trace.json")
        local xs = validate(doc)
        local seen = {}
        for _, e in ipairs(xs) do seen[e.name] = (seen[e.name] or 0) + 1 end
        for _, name in ipairs({ "apr pass", "model load", "weights upload", "tensor allocation", "tokenize", "prefill", "forward",
                                "decode step", "sample", "detokenize", "H2D copy", "D2H copy" }) do
            assert.truthy(seen[name], name .. " missing: " .. cjson.encode(seen))
        end
        assert.equal(7, seen["decode step"])      -- 8 tokens: the prompt's pass gives the first
        assert.equal(1, seen["prefill"])
        assert.equal(1, seen["apr pass"])
        assert.equal(0, doc.otherData.exit_code)
        assert.equal(false, doc.otherData.kernels)
        local summary = load(dir .. "/out/summary.json")
        assert.equal(7, summary.decode_steps.steps)
        assert.is_true(summary.wall_us > 0)
        h.rmtree(dir)
    end)

    it("writes a trace a Chrome-trace reader loads (flamegraph-textual)", function()
        if not io.open(PYTHON) then return pending("the test venv is missing (scripts/pyenv.sh)") end
        local dir = h.tmpdir()
        local r = h.apr("trace -o " .. dir .. " -- apr pass " .. TINY .. GEN)
        assert.equal(0, r.code, r.err)
        local p = assert(io.popen(string.format("%s %s chrome %s/trace.json 2>&1", PYTHON, ORACLE, dir)))
        local out = p:read("*a")
        assert.is_true(p:close(), out)
        local doc = cjson.decode(out)
        assert.is_true(doc.total > 0, out)
        assert.truthy(table.concat(doc.threads, ","):find("main", 1, true), out)
        h.rmtree(dir)
    end)

    it("passes the command's exit code through and still reports", function()
        local dir = h.tmpdir()
        local r = h.apr("trace -o " .. dir .. " -- apr pass " .. dir .. "/missing.gguf --prompt x")
        assert.equal(1, r.code, r.err)
        assert.truthy(r.err:find("missing.gguf", 1, true), r.err)
        assert.truthy(r.err:find("apr trace of", 1, true), r.err)
        assert.equal(1, load(dir .. "/trace.json").otherData.exit_code)
        r = h.apr("trace -o " .. dir .. " -- apr pass --no-such-option")
        assert.equal(2, r.code, r.err)
        h.rmtree(dir)
    end)

    it("refuses what it cannot trace, with usage errors", function()
        local r = h.apr("trace")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("missing COMMAND", 1, true), r.err)
        r = h.apr("trace -- ls -l")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("'ls' is not an apr command", 1, true), r.err)
        r = h.apr("trace -o /dev/null/x -- apr version")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("/dev/null", 1, true), r.err)
        r = h.apr("trace --ring 3 -- apr version")
        assert.equal(2, r.code)
    end)

    it("traces any apr command, by name alone too", function()
        local dir = h.tmpdir()
        local r = h.apr("trace -o " .. dir .. " -- info " .. TINY)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("tiny", 1, true) or #r.out > 0)
        local seen = {}
        for _, e in ipairs(validate(load(dir .. "/trace.json"))) do seen[e.name] = true end
        assert.truthy(seen["apr info"])
        h.rmtree(dir)
    end)
end)

describe("--trace DIR", function()
    it("on apr pass writes the outputs and prints the summary on stderr, stdout unchanged", function()
        local dir = h.tmpdir()
        local plain = h.apr("pass " .. TINY .. GEN)
        local r = h.apr("pass " .. TINY .. GEN .. " --trace " .. dir .. "/t")
        assert.equal(0, r.code, r.err)
        assert.equal(plain.out, r.out)
        assert.truthy(r.err:find("apr trace of `apr pass", 1, true), r.err)
        validate(load(dir .. "/t/trace.json"))
        assert.truthy(h.read_file(dir .. "/t/trace.svg"):find("<svg", 1, true))
        h.rmtree(dir)
    end)

    it("on apr serve records each HTTP request and the engine's steps", function()
        local serve = require "tests.lua.apr.server.serve_helper"
        local client = require "tests.lua.apr.server.client"
        local dir = h.tmpdir()
        local s = serve.start("--trace " .. dir .. " --parallel 2")
        local body = '{"prompt":"fn main() {","max_tokens":4}'
        for _ = 1, 3 do
            local res = client.request(s.port, "POST", "/v1/completions", body, { ["Content-Type"] = "application/json" })
            assert.equal(200, res.status)
        end
        assert.equal(0, s:stop())
        local xs = validate(load(dir .. "/trace.json"))
        local seen, lanes = {}, {}
        for _, e in ipairs(xs) do
            seen[e.name] = (seen[e.name] or 0) + 1
            if e.name:find("^HTTP") then lanes[e.tid] = true end
        end
        assert.equal(3, seen["HTTP POST /v1/completions"], cjson.encode(seen))
        assert.truthy(seen["engine step"], cjson.encode(seen))
        assert.truthy(seen["decode step"], cjson.encode(seen))
        assert.truthy(seen["apr serve"])
        h.rmtree(dir)
    end)
end)
