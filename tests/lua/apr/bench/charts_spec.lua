-- charts_spec.lua — the report's SVG charts rendered by headless Chromium
-- (Debian's chromium, tests/lua/apr/bench/svg_render.py): the screenshot
-- is not blank, and the decode-rate panel has one bar per system, in
-- order, whose heights stand in the ratio of the medians.
local json = require "apr.json"
local h = require "tests.lua.helpers"
local report = require "apr.bench.report"
local charts = require "apr.bench.charts"
local server = require "apr.bench.server"

local PYTHON = "/usr/bin/python3"

-- A report of 10 runs per system with decode rates around 100, 50 and 25.
local function synthetic_doc()
    local systems, results = {}, {}
    local rates = { apr = 100, ["llama.cpp"] = 50, ollama = 25 }
    for _, id in ipairs({ "apr", "llama.cpp", "ollama" }) do
        local s = server.new(id, id == "ollama" and "Ollama" or id)
        s.status, s.version = "ready", id .. " 1.0"
        systems[#systems + 1] = s
        local runs = {}
        for i = 1, 10 do
            local rate = rates[id] * (1 + 0.01 * ((i % 3) - 1))
            runs[i] = { run = i, order = 1, ok = true, decode_tps = rate, throughput_tps = rate * 0.9,
                        ttft_s = 10 / rate, itl_p50_ms = 1000 / rate, itl_p99_ms = 1100 / rate, e2e_s = 1,
                        requests = { { ok = true, ttft_s = 10 / rate } }, gaps_ms = { 1000 / rate, 1010 / rate } }
        end
        results[id] = { [1] = { runs = runs, warmup = { runs = 2, failed = 0 } } }
    end
    local cfg = { runs = 10, warmup = 2, max_tokens = 16, ctx = 4096, parallel = 1, concurrency = { 1 }, gpu = false,
                  flash_attn = true, threads = 2, seed = 1, confidence = 0.95 }
    local env = report.environment({ available = false, reason = "test", processes = function() end })
    report.finish_environment(env)
    return report.build({ cfg = cfg, systems = systems, results = results, environment = env,
        model = { path = "m.gguf", name = "test <model> & \"chart\"", architecture = "qwen2", quantization = "Q8_0",
                  size_bytes = 1, parameters = 1, context_length = 4096 },
        prompts = { source = "test", list = { {} } }, prompts_sha256 = string.rep("0", 64), argv = { "apr" },
        created = "2025-01-01T00:00:00Z" })
end

describe("bench charts in a browser", function()
    it("render in headless Chromium with a bar per system, heights in the ratio of the medians", function()
        local doc = synthetic_doc()
        local svg = charts.render(doc)
        local dir = h.tmpdir()
        local path = dir .. "/c.svg"
        local f = assert(io.open(path, "wb"))
        f:write(svg)
        f:close()
        local W, H = svg:match('<svg[^>]* width="(%d+)"'), svg:match('<svg[^>]* height="(%d+)"')
        -- The decode panel: translate(90,130), 520 x 260.
        local cmd = string.format("%s tests/lua/apr/bench/svg_render.py %s %s %s 85 120 615 395 '%s' '%s' '%s'", PYTHON, path,
            W, H, charts.COLORS.apr, charts.COLORS["llama.cpp"], charts.COLORS.ollama)
        local p = io.popen(cmd)
        local out = p:read("*a")
        p:close()
        h.rmtree(dir)
        local m = json.decode(out)
        assert.is_table(m, "svg_render.py said: " .. out)
        assert.is_nil(m.error, m.error)
        assert.equal(tonumber(W), m.size[1])
        assert.is_true(m.nonwhite > 20000, "a blank screenshot: " .. m.nonwhite .. " pixels drawn")
        local heights, lefts = {}, {}
        for _, id in ipairs({ "apr", "llama.cpp", "ollama" }) do
            local boxes = m.bars[charts.COLORS[id]]
            assert.equal(1, #boxes, id .. ": " .. #boxes .. " bars in the decode panel")
            local b = boxes[1]
            heights[id], lefts[id] = b[4] - b[2] + 1, b[1]
            assert.is_true(b[3] - b[1] > 20, id .. ": a bar " .. (b[3] - b[1]) .. " px wide")
            assert.is_true(math.abs(b[4] - 390) <= 2, id .. ": the bar does not stand on the axis (" .. b[4] .. ")")
        end
        assert.is_true(lefts.apr < lefts["llama.cpp"] and lefts["llama.cpp"] < lefts.ollama)
        local med = {}
        for _, r in ipairs(doc.results) do med[r.system] = r.summary.decode_tps.median end
        for _, pair in ipairs({ { "apr", "llama.cpp" }, { "llama.cpp", "ollama" } }) do
            local want = med[pair[1]] / med[pair[2]]
            local got = heights[pair[1]] / heights[pair[2]]
            assert.is_true(math.abs(got - want) / want < 0.03,
                string.format("%s/%s: bars %.3f, medians %.3f", pair[1], pair[2], got, want))
        end
    end)

    it("draws whiskers for the medians' intervals and a CDF line per system", function()
        local doc = synthetic_doc()
        local svg = charts.render(doc)
        local _, whiskers = svg:gsub('class="whisker"', "")
        assert.equal(4 * 3 * 3, whiskers)  -- 4 bar panels, 3 systems, 3 lines each
        -- The first bar's whisker: a vertical line from the interval's top to
        -- its bottom, a cap at each end, in the panel's scale (0..125 over 260 px).
        local lines = {}
        for y1, y2 in svg:gmatch('<line class="whisker"[^>]* y1="([%d.]+)" y2="([%d.]+)"/>') do
            lines[#lines + 1] = { tonumber(y1), tonumber(y2) }
        end
        local ci = doc.results[1].summary.decode_tps.median_ci95
        local function yof(v) return 260 - v / 125 * 260 end
        assert.is_true(math.abs(lines[1][1] - yof(ci[2])) < 0.02 and math.abs(lines[1][2] - yof(ci[1])) < 0.02,
            string.format("whisker %s-%s for the interval %s-%s", lines[1][1], lines[1][2], ci[1], ci[2]))
        assert.is_true(math.abs(lines[2][1] - yof(ci[2])) < 0.02 and lines[2][1] == lines[2][2])
        assert.is_true(math.abs(lines[3][1] - yof(ci[1])) < 0.02 and lines[3][1] == lines[3][2])
        local _, series = svg:gsub('class="series"', "")
        assert.equal(2 * 3, series)        -- TTFT and ITL, 3 systems
        assert.truthy(svg:find("test &lt;model&gt; &amp; &quot;chart&quot;", 1, true))
    end)

    it("picks tick steps of 1, 2, 2.5 or 5 times a power of ten", function()
        assert.same({ 20, 100 }, { charts.nice_ticks(95, 5) })
        assert.same({ 0.25, 1.25 }, { charts.nice_ticks(1.05, 5) })
        assert.same({ 1, 1 }, { charts.nice_ticks(0, 5) })
        local step, top = charts.nice_ticks(812.4, 5)
        assert.equal(200, step)
        assert.equal(1000, top)
    end)
end)
