-- bench/charts.lua — the SVG charts of a benchmark report (apr.svg draws):
-- bars of each metric's median per system and concurrency level with the
-- median's 95% interval as whiskers, and the distributions (CDFs) of time
-- to first token and inter-token latency.
local svg = require "apr.svg"
local json = require "apr.json"

local M = {}

-- A color per system, distinct in print and for common color blindness
-- (Okabe and Ito's palette).
M.COLORS = { apr = "#0072b2", ["llama.cpp"] = "#e69f00", ollama = "#009e73" }
local EXTRA = { "#cc79a7", "#56b4e9", "#d55e00", "#f0e442" }

local function color_of(id, i) return M.COLORS[id] or EXTRA[(i - 1) % #EXTRA + 1] end
M.color_of = color_of

-- Ticks for 0..max: a step of 1, 2 or 5 times a power of ten giving about
-- n ticks; returns the step and the axis top (a multiple of it).
function M.nice_ticks(max, n)
    if not max or max <= 0 then return 1, 1 end
    local raw = max / (n or 5)
    local p = 10 ^ math.floor(math.log10(raw))
    local step
    for _, m in ipairs({ 1, 2, 2.5, 5, 10 }) do
        step = m * p
        if raw <= step then break end
    end
    return step, math.ceil(max / step - 1e-9) * step
end

local function tick_text(v)
    if v == 0 then return "0" end
    if math.abs(v) >= 1e7 or math.abs(v) < 1e-2 then return string.format("%.3g", v) end
    if math.abs(v) >= 1e4 and v == math.floor(v) then return string.format("%gk", v / 1000) end
    return (string.format("%.2f", v):gsub("0+$", ""):gsub("%.$", ""))
end

local function frame(g, w, h, title, ylabel)
    g:text(w / 2, -14, title, { ["text-anchor"] = "middle", ["font-size"] = 14, ["font-weight"] = "bold" })
    if ylabel then
        g:text(-46, h / 2, ylabel, { ["text-anchor"] = "middle", transform = string.format("rotate(-90 %s %s)", -46, h / 2) })
    end
end

-- bars(parent, x, y, w, h, spec): spec = { title, ylabel, groups = { { label,
-- bars = { { label, id, value, lo, hi } } } } }. Bars without a value are
-- left out (their slot stays empty); whiskers are drawn where lo and hi are.
function M.bars(parent, x, y, w, h, spec)
    local g = parent:group({ transform = string.format("translate(%s,%s)", svg.number(x), svg.number(y)), class = "bars" })
    frame(g, w, h, spec.title, spec.ylabel)
    local top = 0
    for _, grp in ipairs(spec.groups) do
        for _, b in ipairs(grp.bars) do
            if b.value then top = math.max(top, b.hi or b.value, b.value) end
        end
    end
    local step, ymax = M.nice_ticks(top * 1.05, 5)
    local function yof(v) return h - v / ymax * h end
    for v = 0, ymax + step / 2, step do
        g:line(0, yof(v), w, yof(v), { stroke = "#e2e8f0", ["stroke-width"] = 1 })
        g:text(-6, yof(v) + 4, tick_text(v), { ["text-anchor"] = "end", fill = "#4a5568", ["font-size"] = 11 })
    end
    g:line(0, h, w, h, { stroke = "#4a5568", ["stroke-width"] = 1 })
    local ng = #spec.groups
    if ng == 0 then return g end
    local gw = w / ng
    for gi, grp in ipairs(spec.groups) do
        local nb = math.max(1, #grp.bars)
        local bw = math.min(60, gw * 0.8 / nb)
        local x0 = (gi - 1) * gw + (gw - bw * nb) / 2
        for bi, b in ipairs(grp.bars) do
            local bx = x0 + (bi - 1) * bw
            if b.value then
                local r = g:rect({ x = bx + 2, y = yof(b.value), width = bw - 4, height = h - yof(b.value),
                                   fill = b.color, class = "bar", ["data-system"] = b.id, ["data-value"] = b.value })
                r:title(string.format("%s: %s%s", b.label, tick_text(b.value),
                    b.lo and string.format(" [%s, %s]", tick_text(b.lo), tick_text(b.hi)) or ""))
                if b.lo and b.hi then
                    local cx = bx + bw / 2
                    local wk = { stroke = "#1a202c", ["stroke-width"] = 1.5, class = "whisker" }
                    g:line(cx, yof(b.hi), cx, yof(b.lo), wk)
                    g:line(cx - bw / 6, yof(b.hi), cx + bw / 6, yof(b.hi), wk)
                    g:line(cx - bw / 6, yof(b.lo), cx + bw / 6, yof(b.lo), wk)
                end
            end
        end
        g:text((gi - 0.5) * gw, h + 18, grp.label, { ["text-anchor"] = "middle", fill = "#2d3748" })
    end
    return g
end

-- cdf(parent, x, y, w, h, spec): spec = { title, xlabel, series = { { label,
-- id, color, dash, points = { {value, quantile}, ... } } } }; the x axis
-- runs from 0 to the largest value shown (the 99.5th percentile at most,
-- so one outlier does not squeeze the rest to a line).
function M.cdf(parent, x, y, w, h, spec)
    local g = parent:group({ transform = string.format("translate(%s,%s)", svg.number(x), svg.number(y)), class = "cdf" })
    frame(g, w, h, spec.title, "fraction of samples")
    local xmax = 0
    for _, s in ipairs(spec.series) do
        for _, p in ipairs(s.points) do if p[2] <= 0.995 then xmax = math.max(xmax, p[1]) end end
    end
    local step, top = M.nice_ticks(xmax, 5)
    local function xof(v) return math.min(v, top) / top * w end
    local function yof(q) return h - q * h end
    for q = 0, 1.0001, 0.25 do
        g:line(0, yof(q), w, yof(q), { stroke = "#e2e8f0" })
        g:text(-6, yof(q) + 4, tick_text(q), { ["text-anchor"] = "end", fill = "#4a5568", ["font-size"] = 11 })
    end
    for v = 0, top + step / 2, step do
        g:text(xof(v), h + 16, tick_text(v), { ["text-anchor"] = "middle", fill = "#4a5568", ["font-size"] = 11 })
    end
    g:line(0, h, w, h, { stroke = "#4a5568" })
    g:text(w / 2, h + 34, spec.xlabel, { ["text-anchor"] = "middle", fill = "#2d3748" })
    if xmax == 0 then g:text(w / 2, h / 2, "no runs", { ["text-anchor"] = "middle", fill = "#718096" }) end
    for _, s in ipairs(spec.series) do
        local pts = {}
        for _, p in ipairs(s.points) do
            if p[1] <= top then pts[#pts + 1] = { xof(p[1]), yof(p[2]) } end
        end
        if #pts >= 2 then
            local l = g:polyline(pts, { stroke = s.color, ["stroke-width"] = 2, ["stroke-dasharray"] = s.dash,
                                        class = "series", ["data-system"] = s.id })
            l:title(s.label)
        end
    end
    return g
end

local function legend(parent, x, y, systems)
    local g = parent:group({ transform = string.format("translate(%s,%s)", svg.number(x), svg.number(y)), class = "legend" })
    local cx = 0
    for i, s in ipairs(systems) do
        g:rect({ x = cx, y = -10, width = 12, height = 12, fill = color_of(s.id, i) })
        local v = s.version ~= json.null and tostring(s.version):match("^[^,]*"):sub(1, 60) or ""
        local label = s.name .. (v ~= "" and (" (" .. v .. ")") or "")
        g:text(cx + 18, 0, label)
        cx = cx + 40 + 6.5 * #label
    end
    return g
end

-- render(doc) -> the SVG text of a report document (bench/report.lua).
function M.render(doc)
    local systems = {}
    local index = {}
    for _, s in ipairs(doc.systems) do
        if s.status == "ok" then
            systems[#systems + 1] = s
            index[s.id] = #systems
        end
    end
    local function result(id, c)
        for _, r in ipairs(doc.results) do if r.system == id and r.concurrency == c then return r end end
    end
    local W, PW, PH = 1240, 520, 260
    local panels = {
        { "decode_tps", "Decode rate per stream", "tokens/s", 1 },
        { "throughput_tps", "Throughput, all streams", "tokens/s", 1 },
        { "ttft_s", "Time to first token", "ms", 1000 },
        { "itl_p99_ms", "Inter-token latency p99", "ms", 1 },
    }
    local rows = math.ceil(#panels / 2) + #doc.config.concurrency
    local H = 110 + rows * (PH + 90)
    local title = string.format("apr bench: %s", doc.model.name ~= json.null and doc.model.name or doc.model.path)
    local d = svg.new(W, H, { title = title })
    d:text(W / 2, 30, title, { ["text-anchor"] = "middle", ["font-size"] = 18, ["font-weight"] = "bold" })
    d:text(W / 2, 52, string.format("%s; %d runs + %d warm-up per system and level; medians with %s; %s",
        doc.environment.gpu.available and tostring(doc.environment.gpu.name) or ("CPU: " .. tostring(doc.environment.cpu)),
        doc.config.runs, doc.config.warmup,
        doc.config.runs >= 6 and "95% intervals" or "no intervals (a median's 95% interval needs 6 runs)",
        doc.created), { ["text-anchor"] = "middle", fill = "#4a5568" })
    legend(d, 80, 80, systems)
    for pi, p in ipairs(panels) do
        local col, row = (pi - 1) % 2, math.floor((pi - 1) / 2)
        local groups = {}
        for _, c in ipairs(doc.config.concurrency) do
            local grp = { label = "concurrency " .. c, bars = {} }
            for i, s in ipairs(systems) do
                local r = result(s.id, c)
                local sm = r and r.summary[p[1]]
                local b = { id = s.id, label = s.name .. ", concurrency " .. c, color = color_of(s.id, i) }
                if sm and sm.median ~= json.null then
                    b.value = sm.median * p[4]
                    if sm.median_ci95[1] ~= json.null then b.lo, b.hi = sm.median_ci95[1] * p[4], sm.median_ci95[2] * p[4] end
                end
                grp.bars[#grp.bars + 1] = b
            end
            groups[#groups + 1] = grp
        end
        M.bars(d, 90 + col * (PW + 100), 130 + row * (PH + 90), PW, PH,
            { title = p[2], ylabel = p[3], groups = groups })
    end
    local base_row = math.ceil(#panels / 2)
    for ci, c in ipairs(doc.config.concurrency) do
        local ttft, itl = {}, {}
        for i, s in ipairs(systems) do
            local r = result(s.id, c)
            if r then
                local tp = {}
                for _, q in ipairs(r.ttft_cdf_s) do tp[#tp + 1] = { q[2] * 1000, q[1] } end
                ttft[#ttft + 1] = { id = s.id, label = s.name, color = color_of(s.id, i), points = tp }
                local ip = {}
                for _, q in ipairs(r.itl_cdf_ms) do ip[#ip + 1] = { q[2], q[1] } end
                itl[#itl + 1] = { id = s.id, label = s.name, color = color_of(s.id, i), points = ip }
            end
        end
        local y = 130 + (base_row + ci - 1) * (PH + 90)
        M.cdf(d, 90, y, PW, PH, { title = "Time to first token, concurrency " .. c, xlabel = "ms", series = ttft })
        M.cdf(d, 90 + PW + 100, y, PW, PH, { title = "Inter-token latency, concurrency " .. c, xlabel = "ms", series = itl })
    end
    return d:render()
end

return M
