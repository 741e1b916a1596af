-- svg_spec.lua — the flamegraph: well-formed XML with every frame's
-- tooltip, names escaped, and a picture when headless Chromium renders it.
local stacks = require "apr.trace.stacks"
local svg = require "apr.trace.svg"
local h = require "tests.lua.helpers"
local cjson = require "cjson"

local PYTHON = ".cache/pyenv/bin/python"
local ORACLE = "tests/lua/apr/trace/trace_oracle.py"

local function X(tid, name, ts, dur, cat) return { tid = tid, name = name, ts = ts, dur = dur, cat = cat or "span" } end

local function sample_tree()
    return stacks.build({
        threads = { [1] = "main" },
        meta = { duration_us = 1000 },
        events = {
            X(1, "apr pass", 0, 1000), X(1, "model load", 0, 300), X(1, "decode step", 400, 500),
            X(1, "a <weird> & \"quoted\" 'name' \1 ünïcødé", 950, 40),
            X(1000000000, "gemv_segs<4>", 420, 300, "kernel"),
            X(1000000000, "attn_decode<128>", 720, 100, "kernel"),
        },
    })
end

local function oracle(kind, path)
    local p = assert(io.popen(string.format("%s %s %s %s 2>&1", PYTHON, ORACLE, kind, path)))
    local out = p:read("*a")
    local ok = p:close()
    return ok and cjson.decode(out) or nil, out
end

local function chromium()
    for _, name in ipairs({ "chromium", "chromium-browser", "google-chrome" }) do
        local p = io.popen("command -v " .. name .. " 2>/dev/null")
        local path = p:read("*l")
        p:close()
        if path and path ~= "" then return path end
    end
end

describe("apr.trace.svg", function()
    it("is XML with one tooltip per frame, names escaped", function()
        if not io.open(PYTHON) then return pending("the test venv is missing (scripts/pyenv.sh)") end
        local dir = h.tmpdir()
        local tree = sample_tree()
        local text = svg.render(tree, { title = "t & <title>", subtitle = "s", wall_us = 1000 })
        local f = assert(io.open(dir .. "/t.svg", "wb"))
        f:write(text)
        f:close()
        local doc, out = oracle("xml", dir .. "/t.svg")
        assert.truthy(doc, out)
        assert.equal("{http://www.w3.org/2000/svg}svg", doc.tag)
        assert.equal(1, doc.scripts)
        -- all, CPU, main, apr pass, decode step, the odd name, Memory, model load, GPU kernels, matmul, gemv, attention, attn
        assert.equal(13, doc.frames)
        local weird
        for _, t in ipairs(doc.titles) do
            if t:find("weird", 1, true) then weird = t end
        end
        assert.truthy(weird)
        assert.truthy(weird:find("a <weird> & \"quoted\" 'name' ? ünïcødé", 1, true), weird)
        -- shares of wall time and of the parent in the tooltips
        local found
        for _, t in ipairs(doc.titles) do
            if t:find("^gemv_segs<4>\n300.0 µs, 30.0%% of wall time, 100.0%% of matmul") then found = true end
        end
        assert.is_true(found, table.concat(doc.titles, " | "))
        h.rmtree(dir)
    end)

    it("renders in headless Chromium: a picture of the groups' colours", function()
        local browser = chromium()
        if not browser then return pending("chromium is not installed (make deps)") end
        if not io.open(PYTHON) then return pending("the test venv is missing (scripts/pyenv.sh)") end
        local dir = h.tmpdir()
        local f = assert(io.open(dir .. "/t.svg", "wb"))
        f:write(svg.render(sample_tree(), { title = "render test", wall_us = 1000 }))
        f:close()
        local cmd = string.format("cd %s && timeout 120 %s --headless --no-sandbox --disable-gpu --hide-scrollbars " ..
            "--user-data-dir=%s/profile --window-size=1200,300 --screenshot=%s/shot.png file://%s/t.svg >/dev/null 2>&1",
            dir, browser, dir, dir, dir)
        os.execute(cmd)
        local doc, out = oracle("png", dir .. "/shot.png")
        assert.truthy(doc, "no screenshot: " .. out)
        assert.equal(1200, doc.width)
        -- boxes were drawn: many colours, the background well under the whole,
        -- and the CPU (yellow) and Memory (blue) families both present
        assert.is_true(doc.distinct > 20, out)
        assert.is_true(doc.background_share < 0.9, out)
        assert.is_true(doc.yellow > 2000, out)
        assert.is_true(doc.blue > 500, out)
        h.rmtree(dir)
    end)
end)
