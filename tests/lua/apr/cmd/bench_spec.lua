-- bench_spec.lua — `apr bench` end to end, without a GPU: stand-ins for
-- llama-server and Ollama (tests/lua/apr/bench/standin_*.lua) on loopback
-- with set delays and token rates, so the harness, the statistics and the
-- outputs can be checked against figures known in advance; the real
-- `apr serve` on the tiny fixture; the fake NVML library for the GPU
-- figures; missing and failing baselines; bad input.
local h = require "tests.lua.helpers"
local json = require "apr.json"
local uv = require "luv"

local MODEL = "tests/fixtures/models/tiny-q8_0.gguf"
local PYTHON = "/usr/bin/python3"
local FAKE_NVML = "build/fake-nvml/libnvidia-ml.so.1"

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write(path, text, mode)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    if mode then os.execute("chmod " .. mode .. " " .. sh(path)) end
end

-- An executable named llama-server in dir that runs the stand-in with env.
local function llama_wrapper(dir, env)
    local lines = { "#!/bin/sh" }
    for k, v in pairs(env or {}) do lines[#lines + 1] = string.format("export %s=%s", k, sh(v)) end
    lines[#lines + 1] = string.format('exec %s run %s/tests/lua/apr/bench/standin_llama_server.lua "$@"',
        sh(h.root .. "/apr"), sh(h.root))
    local path = dir .. "/llama-server"
    write(path, table.concat(lines, "\n") .. "\n", "755")
    return path
end

-- A stand-in server started here (Ollama's, or llama-server's for --apr-url),
-- on a free port; returns its port and pid. stop(pid) in teardown.
local function start_standin(dir, name, script_args, env)
    local envs = {}
    for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. sh(v) end
    local pidfile, portfile = dir .. "/" .. name .. ".pid", dir .. "/" .. name .. ".port"
    os.execute(string.format("( %s %s run %s %s >%s 2>%s/%s.log & echo $! >%s ) </dev/null >/dev/null 2>&1",
        table.concat(envs, " "), sh(h.root .. "/apr"), script_args[1], table.concat(script_args, " ", 2),
        sh(portfile), sh(dir), name, sh(pidfile)))
    local client = require "tests.lua.apr.server.client"
    for _ = 1, 200 do
        local port = tonumber(h.read_file(portfile):match("%d+") or "")
        if port then return port, tonumber(h.read_file(pidfile)) end
        client.sleep(25)
    end
    error("the stand-in " .. name .. " did not start: " .. h.read_file(dir .. "/" .. name .. ".log"))
end

local function free_port()
    local tcp = uv.new_tcp()
    tcp:bind("127.0.0.1", 0)
    local p = tcp:getsockname().port
    tcp:close()
    return p
end

-- A llama-server stand-in started here (for --apr-url): waits for /health.
local function start_llama_standin(dir, name, env)
    local port = free_port()
    local envs = {}
    for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. sh(v) end
    local pidfile = dir .. "/" .. name .. ".pid"
    os.execute(string.format("( %s %s run %s/tests/lua/apr/bench/standin_llama_server.lua -m %s --port %d -c 4096 -np 4 " ..
        ">%s/%s.log 2>&1 & echo $! >%s ) </dev/null >/dev/null 2>&1", table.concat(envs, " "), sh(h.root .. "/apr"),
        sh(h.root), sh(MODEL), port, sh(dir), name, sh(pidfile)))
    local client = require "tests.lua.apr.server.client"
    for _ = 1, 200 do
        local r = client.request(port, "GET", "/health", nil, nil, 1)
        if r and r.status == 200 then return port, tonumber(h.read_file(pidfile)) end
        client.sleep(25)
    end
    error("the stand-in " .. name .. " did not start: " .. h.read_file(dir .. "/" .. name .. ".log"))
end

local function stop(pid) if pid then os.execute("kill " .. pid .. " 2>/dev/null") end end

local function validate(report, csv)
    local p = io.popen(string.format("%s tests/lua/apr/bench/validate_report.py docs/bench.schema.json %s %s 2>&1",
        PYTHON, sh(report), csv and sh(csv) or ""))
    local out = p:read("*a")
    p:close()
    return out
end

local function result(doc, system, c)
    for _, r in ipairs(doc.results) do if r.system == system and r.concurrency == c then return r end end
end
local function system(doc, id)
    for _, s in ipairs(doc.systems) do if s.id == id then return s end end
end
local function cmp(doc, baseline, c, metric)
    for _, x in ipairs(doc.comparisons) do
        if x.baseline == baseline and x.concurrency == c and x.metric == metric then return x end
    end
end

local function within(got, want, rel, what)
    assert(type(got) == "number", what .. ": not measured")
    assert(math.abs(got - want) <= rel * want, string.format("%s: %.4g, expected %.4g +- %d%%", what, got, want, rel * 100))
end

describe("apr bench against stand-ins with known speeds", function()
    local dir, pids, doc, r = nil, {}, nil, nil
    setup(function()
        dir = h.tmpdir()
        write(dir .. "/procs", "")
        -- "apr" here is a llama-server stand-in at 300 tok/s given by URL, so
        -- every ratio is known: 2x llama.cpp's decode rate, 3x Ollama's.
        local apr_port
        apr_port, pids.apr = start_llama_standin(dir, "fast", {
            STANDIN_TOKENS_PER_S = 300, STANDIN_TTFT_MS = 10, STANDIN_LOAD_MS = 0, STANDIN_SEED = 3 })
        local ollama_port
        ollama_port, pids.ollama = start_standin(dir, "ollama", { "tests/lua/apr/bench/standin_ollama.lua", "0" }, {
            STANDIN_TOKENS_PER_S = 100, STANDIN_TTFT_MS = 30, STANDIN_LOAD_MS = 150, STANDIN_GPU_BYTES = 987654321,
            STANDIN_OLLAMA_PARALLEL = 4, STANDIN_SEED = 5 })
        local llama = llama_wrapper(dir, { STANDIN_TOKENS_PER_S = 150, STANDIN_TTFT_MS = 40, STANDIN_LOAD_MS = 300,
                                           STANDIN_GPU_BYTES = 123456789, STANDIN_SEED = 4 })
        local cmd = string.format("bench %s --apr-url http://127.0.0.1:%d --baseline llama-cpp=%s " ..
            "--baseline ollama=http://127.0.0.1:%d --runs 6 --warmup 1 --max-tokens 24 --concurrency 2,1 " ..
            "--duration 3s -o %s/r.json --csv %s/r.csv --svg %s/r.svg", MODEL, apr_port, sh(llama), ollama_port,
            dir, dir, dir)
        -- The fake NVML library (tests/fixtures/nvml) stands for the driver's.
        local out, err = dir .. "/out", dir .. "/err"
        local code = os.execute(string.format("APR_NVML_LIBRARY=%s FAKE_NVML_PROCESSES=%s %s %s >%s 2>%s",
            sh(h.root .. "/" .. FAKE_NVML), sh(dir .. "/procs"), h.apr_bin, cmd, out, err))
        r = { code = code, out = h.read_file(out), err = h.read_file(err) }
        doc = json.decode(h.read_file(dir .. "/r.json"))
    end)
    teardown(function()
        for _, pid in pairs(pids) do stop(pid) end
        if dir then h.rmtree(dir) end
    end)

    it("exits 0 and writes a report valid against docs/bench.schema.json, with a CSV of the same runs", function()
        assert.equal(0, r.code, r.err .. r.out)
        assert.is_table(doc, "no JSON report")
        assert.equal("ok\n", validate(dir .. "/r.json", dir .. "/r.csv"))
        assert.is_true(doc.complete)
        -- The table names every system and the comparisons.
        assert.truthy(r.out:find("apr vs llama.cpp: decode", 1, true), r.out)
        assert.truthy(r.out:find("apr vs Ollama: throughput", 1, true), r.out)
    end)

    it("measures the rates and delays the stand-ins were set to", function()
        within(result(doc, "apr", 1).summary.decode_tps.median, 300, 0.12, "apr decode")
        within(result(doc, "llama.cpp", 1).summary.decode_tps.median, 150, 0.08, "llama.cpp decode")
        within(result(doc, "ollama", 1).summary.decode_tps.median, 100, 0.08, "Ollama decode")
        -- Two streams at once (two slots): each at its rate, both together
        -- at twice one stream's throughput.
        within(result(doc, "llama.cpp", 2).summary.decode_tps.median, 150, 0.08, "llama.cpp decode, 2 streams")
        within(result(doc, "llama.cpp", 2).summary.throughput_tps.median,
            2 * result(doc, "llama.cpp", 1).summary.throughput_tps.median, 0.15, "llama.cpp throughput, 2 streams")
        -- Time to first token: the set delay plus prefill (50 us a prompt token).
        local ttft = result(doc, "llama.cpp", 1).summary.ttft_s.median
        assert.is_true(ttft > 0.038 and ttft < 0.08, "llama.cpp TTFT " .. tostring(ttft))
        -- Inter-token latency: 1/rate.
        within(result(doc, "llama.cpp", 1).summary.itl_p50_ms.median, 1000 / 150, 0.15, "llama.cpp ITL p50")
        -- What the servers say of themselves: llama-server's timings, Ollama's durations.
        within(result(doc, "llama.cpp", 1).summary.server_decode_tps.median, 150, 0.08, "llama-server timings")
        within(result(doc, "ollama", 1).summary.server_decode_tps.median, 100, 0.08, "Ollama eval rate")
        local q = result(doc, "llama.cpp", 1).runs[1].requests[1]
        assert.equal(24, q.tokens)
        assert.equal(24, q.pieces)
        assert.is_true(q.prompt_tokens > 8)
    end)

    it("computes the speedups with intervals that hold the true ratios, and their significance", function()
        local x = cmp(doc, "llama.cpp", 1, "decode_tps")
        within(x.speedup, 2.0, 0.12, "decode speedup vs llama.cpp")
        assert.is_true(x.speedup_ci95[1] < x.speedup and x.speedup < x.speedup_ci95[2])
        assert.is_true(x.p < 1e-4, "p " .. tostring(x.p))
        assert.is_true(x.cohens_d > 3)
        assert.is_true(x.significant)
        local o = cmp(doc, "ollama", 1, "decode_tps")
        within(o.speedup, 3.0, 0.12, "decode speedup vs Ollama")
        -- A time: above 1 means apr is faster (baseline / apr).
        local t = cmp(doc, "llama.cpp", 1, "ttft_s")
        assert.is_true(t.speedup > 1.5, "TTFT speedup " .. tostring(t.speedup))
        assert.is_true(t.cohens_d > 0)
        -- The spec's claims follow from these.
        local claims = {}
        for _, c in ipairs(doc.claims) do claims[c.id] = c end
        assert.equal("pass", claims[41].result, claims[41].detail)
        assert.equal("pass", claims[56].result, claims[56].detail)
        assert.equal("fail", claims[50].result)           -- 6 runs, not 30
        assert.equal("not measured", claims[55].result)
    end)

    it("excludes warm-ups and interleaves the systems in a rotating order", function()
        for _, id in ipairs({ "apr", "llama.cpp", "ollama" }) do
            for _, c in ipairs({ 1, 2 }) do
                local res = result(doc, id, c)
                assert.equal(1, res.warmup_runs)
                assert.equal(6, #res.runs)
                assert.equal(0, res.failed_runs)
            end
        end
        -- Run 1: apr llama.cpp Ollama; run 2: llama.cpp Ollama apr; run 3: Ollama apr llama.cpp.
        local runs = result(doc, "apr", 1).runs
        assert.same({ 1, 3, 2, 1, 3, 2 }, { runs[1].order, runs[2].order, runs[3].order, runs[4].order,
                                            runs[5].order, runs[6].order })
        assert.equal(3, result(doc, "llama.cpp", 1).runs[3].order)
        assert.same({ 1, 2 }, { doc.config.concurrency[1], doc.config.concurrency[2] })
        assert.equal(2, result(doc, "apr", 2).runs[1].streams)
    end)

    it("starts llama-server with apr's context, slots and flash attention, and reads them back", function()
        local s = system(doc, "llama.cpp")
        assert.equal("ok", s.status)
        assert.equal(true, s.started)
        local command = table.concat(s.settings.command, " ")
        assert.truthy(command:find("-c 4096 -np 2 -fa on -ngl 0", 1, true), command)
        assert.equal(2048, s.settings.server_slot_ctx)
        assert.equal(2, s.settings.server_slots)
        assert.truthy(s.version:find("7777 (5t4nd1n)", 1, true))
        -- Cold start: launch to first token, the 300 ms load included.
        assert.is_true(s.cold_start.launch_to_first_token_s > 0.3)
        assert.is_true(s.cold_start.launch_to_ready_s > 0.29)
        assert.equal(0, s.exit_code)  -- stopped with SIGTERM, exited cleanly
        local o = system(doc, "ollama")
        assert.equal("ok", o.status)
        assert.equal("Ollama 0.0.0-standin", o.version)
        assert.equal(2048, o.settings.options.num_ctx)
        assert.is_true(o.cold_start.server_load_s >= 0.14)
        assert.equal("apr-bench-", o.settings.model:sub(1, 10))
        assert.is_false(system(doc, "apr").started)
    end)

    it("reads the GPU through NVML: utilization, clocks, temperature and each server's memory", function()
        local g = doc.environment.gpu
        assert.is_true(g.available)
        assert.equal("nvml", g.source)
        assert.equal("Fake GPU (apr tests)", g.name)
        assert.equal("999.99", doc.versions.driver)
        assert.equal("12.4", doc.versions.cuda)
        local run = result(doc, "llama.cpp", 1).runs[1]
        assert.equal(87, run.gpu_util_mean)
        assert.equal(1755, run.sm_clock_min)
        assert.equal(61, run.temp_max)
        assert.equal(350, run.power_mean_w)
        assert.is_true(run.gpu_samples >= 2)
        -- The started llama-server's own process, found in the driver's list.
        assert.equal(123456789, run.gpu_mem_bytes)
        assert.truthy(result(doc, "llama.cpp", 1).gpu_mem_source:find("NVML", 1, true))
        -- Ollama's from its /api/ps; the server given by URL has none.
        assert.equal(987654321, result(doc, "ollama", 1).runs[1].gpu_mem_bytes)
        assert.equal(json.null, result(doc, "apr", 1).runs[1].gpu_mem_bytes)
        local claims = {}
        for _, c in ipairs(doc.claims) do claims[c.id] = c end
        assert.equal("pass", claims[53].result, claims[53].detail)
        assert.equal("pass", claims[54].result, claims[54].detail)
    end)

    it("runs the stability test and fits a drift line", function()
        assert.is_table(doc.stability)
        assert.equal(1, doc.stability.concurrency)
        assert.is_true(doc.stability.duration_s >= 3)
        for _, s in ipairs(doc.stability.systems) do
            assert.is_true(s.drift.runs >= 3, s.system .. ": " .. s.drift.runs .. " runs")
            assert.truthy(({ stable = true, degrading = true, improving = true })[s.drift.verdict])
            assert.is_number(s.drift.p)
        end
    end)

    it("writes SVG that is well-formed XML with a bar per system and level", function()
        local svg = h.read_file(dir .. "/r.svg")
        assert.truthy(svg:find("^<%?xml"))
        local p = io.popen(string.format("%s -c \"import sys, xml.etree.ElementTree as E; " ..
            "t = E.parse(sys.argv[1]); ns = '{http://www.w3.org/2000/svg}'; " ..
            "print(len([r for r in t.iter(ns + 'rect') if r.get('class') == 'bar']))\" %s 2>&1", PYTHON, sh(dir .. "/r.svg")))
        local n = p:read("*a")
        p:close()
        -- 4 bar panels x 2 levels x 3 systems.
        assert.equal("24\n", n)
    end)
end)

describe("apr bench with the real apr serve", function()
    it("reports baselines it cannot find as skipped, with the reason, and still measures apr", function()
        local dir = h.tmpdir()
        local r = h.apr(string.format("bench %s --baseline llama-cpp=%s/nothing-here --baseline ollama=http://127.0.0.1:1 " ..
            "--runs 2 --warmup 0 --max-tokens 6 --concurrency 1 -o %s/r.json", MODEL, dir, dir))
        local doc = json.decode(h.read_file(dir .. "/r.json"))
        h.rmtree(dir)
        assert.equal(0, r.code, r.err)
        assert.equal("ok", system(doc, "apr").status)
        assert.is_true(system(doc, "apr").started)
        local l, o = system(doc, "llama.cpp"), system(doc, "ollama")
        assert.equal("skipped", l.status)
        assert.truthy(l.reason:find("no such file", 1, true), l.reason)
        assert.equal("skipped", o.status)
        assert.truthy(o.reason:find("no Ollama server at http://127.0.0.1:1", 1, true), o.reason)
        assert.truthy(r.out:find("llama.cpp: skipped", 1, true), r.out)
        assert.equal(2, #result(doc, "apr", 1).runs)
        assert.is_true(result(doc, "apr", 1).runs[1].tokens >= 5)
        assert.is_true(system(doc, "apr").cold_start.launch_to_first_token_s > 0)
        assert.is_number(result(doc, "apr", 1).runs[1].rss_bytes)
        if not doc.environment.gpu.available then
            -- No GPU (CI): unavailable, with the reason, never zero.
            assert.equal(json.null, result(doc, "apr", 1).runs[1].gpu_util_mean)
            assert.is_string(doc.environment.gpu.reason)
        end
        assert.equal("not measured", doc.claims[1].result)
    end)

    it("finds llama-server on PATH, and says so when it is not there", function()
        local dir = h.tmpdir()
        local r = h.apr(string.format("bench %s --baseline llama-cpp --runs 1 --warmup 0 --max-tokens 4 --json", MODEL))
        local doc = json.decode(r.out)
        assert.equal("skipped", system(doc, "llama.cpp").status)
        assert.truthy(system(doc, "llama.cpp").reason:find("not found on PATH", 1, true))
        llama_wrapper(dir, { STANDIN_LOAD_MS = 0 })
        local out = dir .. "/out"
        os.execute(string.format("PATH=%s:$PATH %s bench %s --baseline llama-cpp --runs 2 --warmup 0 --max-tokens 4 --json >%s 2>/dev/null",
            sh(dir), h.apr_bin, MODEL, out))
        doc = json.decode(h.read_file(out))
        h.rmtree(dir)
        assert.equal("ok", system(doc, "llama.cpp").status)
        assert.equal(2, #result(doc, "llama.cpp", 1).runs)
    end)

    it("attributes device memory by launch footprints where the driver does not list the process", function()
        local dir = h.tmpdir()
        write(dir .. "/procs", "")
        local llama = llama_wrapper(dir, { STANDIN_LOAD_MS = 0, STANDIN_GPU_BYTES = 500000000, STANDIN_GPU_FOREIGN_PID = 1 })
        local out = dir .. "/out"
        os.execute(string.format("APR_NVML_LIBRARY=%s FAKE_NVML_PROCESSES=%s %s bench %s --baseline llama-cpp=%s " ..
            "--runs 2 --warmup 0 --max-tokens 4 --json >%s 2>/dev/null", sh(h.root .. "/" .. FAKE_NVML),
            sh(dir .. "/procs"), h.apr_bin, MODEL, sh(llama), out))
        local doc = json.decode(h.read_file(out))
        h.rmtree(dir)
        assert.equal(500000000, system(doc, "llama.cpp").launch_gpu_memory_bytes)
        local l = result(doc, "llama.cpp", 1)
        assert.equal(500000000, l.runs[1].gpu_mem_bytes)
        assert.truthy(l.gpu_mem_source:find("less the rest", 1, true), l.gpu_mem_source)
        -- apr serve ran on the CPU here: nothing on the device.
        assert.equal(0, result(doc, "apr", 1).runs[1].gpu_mem_bytes)
    end)

    it("sends prompts under the model's template to the completion endpoints with --api completions", function()
        local dir = h.tmpdir()
        local llama = llama_wrapper(dir, { STANDIN_LOAD_MS = 0, STANDIN_ONLY_API = "completions" })
        local port, pid = start_standin(dir, "ollama", { "tests/lua/apr/bench/standin_ollama.lua", "0" },
            { STANDIN_ONLY_API = "completions", STANDIN_LOAD_MS = 0 })
        local r = h.apr(string.format("bench %s --api completions --baseline llama-cpp=%s --baseline ollama=http://127.0.0.1:%d " ..
            "--runs 2 --warmup 0 --max-tokens 5 --json", MODEL, sh(llama), port))
        stop(pid)
        h.rmtree(dir)
        assert.equal(0, r.code, r.err)
        local doc = json.decode(r.out)
        assert.equal("completions", doc.config.api)
        for _, id in ipairs({ "apr", "llama.cpp", "ollama" }) do
            assert.equal("ok", system(doc, id).status, tostring(system(doc, id).reason))
            local q = result(doc, id, 1).runs[1].requests[1]
            assert.equal(5, q.tokens, id)
            -- The prompt carries the template's tokens (ChatML around the message).
            assert.is_true(q.prompt_tokens > 10, id .. " prompt tokens " .. tostring(q.prompt_tokens))
        end
    end)

    it("reports a baseline that dies during the runs as failed, keeps the rest, and exits 1", function()
        local dir = h.tmpdir()
        local llama = llama_wrapper(dir, { STANDIN_FAIL_AFTER = 3, STANDIN_LOAD_MS = 0 })
        -- TMPDIR: the logs it keeps go where the test cleans up.
        local out, err = dir .. "/out", dir .. "/err"
        local code = os.execute(string.format("TMPDIR=%s %s bench %s --baseline llama-cpp=%s --runs 4 --warmup 0 " ..
            "--max-tokens 4 -o %s/r.json >%s 2>%s", sh(dir), h.apr_bin, MODEL, sh(llama), dir, out, err))
        local r = { code = math.floor(code / 256), out = h.read_file(out), err = h.read_file(err) }  -- wait status
        local doc = json.decode(h.read_file(dir .. "/r.json"))
        local valid = validate(dir .. "/r.json")
        h.rmtree(dir)
        assert.equal(1, r.code)
        assert.equal("ok\n", valid)
        local l = system(doc, "llama.cpp")
        assert.equal("failed", l.status)
        assert.truthy(l.reason:find("exited", 1, true), l.reason)
        assert.equal(4, #result(doc, "apr", 1).runs)
        assert.truthy(r.err:find("server logs are in", 1, true))
    end)
end)

describe("apr bench input errors", function()
    local cases = {
        { "--concurrency 0", "concurrency", 2 },
        { "--concurrency 1,x", "concurrency", 2 },
        { "--baseline vllm", "--baseline must be", 2 },
        { "--baseline ollama --baseline ollama", "given twice", 2 },
        { "--baseline ollama=localhost:11434", "http:// URL", 2 },
        { "--duration soon", "--duration expects", 2 },
        { "--parallel 2 --concurrency 4", "below the highest", 2 },
        { "--runs 0", "at least 1", 2 },
        { "--apr-url ftp://x", "http:// URL", 2 },
    }
    for _, c in ipairs(cases) do
        it("rejects " .. c[1], function()
            local r = h.apr("bench " .. MODEL .. " " .. c[1])
            assert.equal(c[3], r.code, r.err)
            assert.truthy(r.err:find(c[2], 1, true), r.err)
            assert.falsy(r.err:find("traceback", 1, true))
        end)
    end

    it("fails with one line on a file that is not a model, or a bad prompts file", function()
        local dir = h.tmpdir()
        write(dir .. "/bad.gguf", "not a gguf file at all")
        local r = h.apr("bench " .. dir .. "/bad.gguf")
        assert.equal(1, r.code)
        assert.equal(1, select(2, r.err:gsub("\n", "")))
        write(dir .. "/p.jsonl", '{"prompt": "a"}\n{"prompt": \n')
        r = h.apr("bench " .. MODEL .. " --prompts " .. dir .. "/p.jsonl")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("line 2 is not valid JSON", 1, true), r.err)
        write(dir .. "/p.txt", "\n\n  \n")
        r = h.apr("bench " .. MODEL .. " --prompts " .. dir .. "/p.txt")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("holds no prompts", 1, true), r.err)
        r = h.apr("bench " .. MODEL .. " -o /nonexistent-dir/r.json")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("no folder", 1, true), r.err)
        h.rmtree(dir)
    end)

    it("sends the user's prompts, the same to every system", function()
        local dir = h.tmpdir()
        write(dir .. "/p.jsonl", '{"prompt": "Say hi."}\n{"messages": [{"role": "user", "content": "Count to 3."}], "system": "Be brief."}\n')
        local r = h.apr(string.format("bench %s --prompts %s/p.jsonl --runs 2 --warmup 0 --max-tokens 4 --json", MODEL, dir))
        h.rmtree(dir)
        assert.equal(0, r.code, r.err)
        local doc = json.decode(r.out)
        assert.equal(2, doc.config.prompts.count)
        assert.truthy(doc.config.prompts.source:find("p.jsonl", 1, true))
    end)
end)

describe("apr bench --duration", function()
    local bench = require "apr.cmd.bench"
    it("reads times as a user writes them", function()
        assert.equal(90, bench.parse_duration("90"))
        assert.equal(90, bench.parse_duration("90s"))
        assert.equal(1800, bench.parse_duration("30m"))
        assert.equal(3600, bench.parse_duration("1h"))
        assert.equal(5400, bench.parse_duration("1h30m"))
        assert.equal(1.5, bench.parse_duration("1.5s"))
        assert.is_nil(bench.parse_duration("1 hour"))
        assert.is_nil(bench.parse_duration("h"))
        assert.is_nil(bench.parse_duration(""))
    end)
end)
