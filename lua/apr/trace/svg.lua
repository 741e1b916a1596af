-- svg.lua — the semantic tree of a trace as an SVG flamegraph.
--
-- An icicle chart (the root on top, as Perfetto and speedscope draw time):
-- one box per node of apr.trace.stacks' tree, its width its share of the
-- root. Every box has a tooltip (<title>: time, share of wall time, share
-- of its parent, count); a small script, inside CDATA so the file stays
-- plain XML, adds search (a regular expression, matches highlighted and
-- their share shown) and zoom (click a box to fill the width with it, click
-- the root or "Reset zoom" to go back). Written by hand: no library makes
-- this SVG from a tree, and flamegraph.pl/inferno would take the folded
-- stacks but not apr's groups, colours or tooltips (the folded stacks are
-- written for them too).
local M = {}

local WIDTH, ROW, TOP, PAD = 1200, 18, 58, 10
local FONT_W = 7.0   -- px per character of 12px monospace, for clipping labels

-- XML text: the five entities escaped, and the control characters XML 1.0
-- forbids replaced (names come from Lua scripts too).
local function esc(s)
    s = tostring(s):gsub("[%z\1-\8\11\12\14-\31]", "?")
    return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                 ["'"] = "&apos;" }))
end

-- The first n bytes of s, not ending inside a UTF-8 sequence.
local function cut(s, n)
    if #s <= n then return s end
    s = s:sub(1, n)
    local lead = s:find("[\192-\255][\128-\191]*$")
    if lead then
        local b = s:byte(lead)
        local len = b >= 240 and 4 or b >= 224 and 3 or 2
        if #s - lead + 1 < len then s = s:sub(1, lead - 1) end
    end
    return s
end

local HUES = {
    ["GPU kernels"] = { 8, 40 }, ["Memory"] = { 195, 225 }, ["CPU"] = { 42, 62 },
    ["Syscalls"] = { 265, 295 }, ["Requests"] = { 110, 150 },
}

local function hash(s)
    local h = 5381
    for i = 1, #s do h = (h * 33 + s:byte(i)) % 2147483647 end
    return h
end

local function color(group, name)
    local hue = HUES[group] or { 0, 0 }
    local h = hash(name)
    local hv = hue[1] + (h % 1000) / 1000 * (hue[2] - hue[1])
    local l = 52 + (math.floor(h / 1000) % 100) / 100 * 16
    local sat = group and HUES[group] and 72 or 0
    return string.format("hsl(%.0f,%d%%,%.0f%%)", hv, sat, l)
end

local function fmt_time(us)
    if us >= 1e6 then return string.format("%.3f s", us / 1e6) end
    if us >= 1e3 then return string.format("%.2f ms", us / 1e3) end
    return string.format("%.1f µs", us)
end

local function fmt_count(n)
    local s = tostring(math.floor(n))
    local r = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
    return (r:gsub("^,", ""))
end

local SCRIPT = [[
var frames = [], zoomed = null;
function init() {
  var gs = document.querySelectorAll("g.f");
  for (var i = 0; i < gs.length; i++) {
    var g = gs[i];
    frames.push({ g: g, x: +g.getAttribute("data-x"), w: +g.getAttribute("data-w"), v: +g.getAttribute("data-v"),
                  p: +g.getAttribute("data-p"), n: g.getAttribute("data-n"), d: +g.getAttribute("data-d") });
    g.addEventListener("click", (function (k) { return function () { zoom(k); }; })(i));
  }
  document.getElementById("search").addEventListener("click", search);
  document.getElementById("reset").addEventListener("click", function () { zoom(0); clearSearch(); });
}
function label(f, px) {
  var n = Math.floor((px - 6) / ]] .. FONT_W .. [[);
  if (n < 3) return "";
  return f.n.length <= n ? f.n : f.n.substring(0, n - 2) + "..";
}
function place(f, x, w) {
  var r = f.g.querySelector("rect"), t = f.g.querySelector("text");
  var px = x * ]] .. (WIDTH - 2 * PAD) .. [[ + ]] .. PAD .. [[, pw = w * ]] .. (WIDTH - 2 * PAD) .. [[;
  r.setAttribute("x", px.toFixed(2)); r.setAttribute("width", Math.max(pw - 0.5, 0.1).toFixed(2));
  t.setAttribute("x", (px + 3).toFixed(2)); t.textContent = label(f, pw);
}
function ancestor(k, of) { while (k > 0 && k !== of) k = frames[k].p; return k === of; }
function zoom(k) {
  var z = frames[k];
  zoomed = k > 0 ? k : null;
  for (var i = 0; i < frames.length; i++) {
    var f = frames[i];
    if (k === 0) { f.g.style.display = ""; f.g.style.opacity = ""; place(f, f.x, f.w); continue; }
    if (ancestor(k, i) && i !== k) { f.g.style.display = ""; f.g.style.opacity = "0.5"; place(f, 0, 1); continue; }
    if (i === k || ancestor(i, k)) {
      f.g.style.display = ""; f.g.style.opacity = "";
      place(f, (f.x - z.x) / z.w, f.w / z.w);
    } else f.g.style.display = "none";
  }
  document.getElementById("reset").style.display = k > 0 ? "" : "none";
}
function clearSearch() {
  for (var i = 0; i < frames.length; i++) frames[i].g.querySelector("rect").style.fill = "";
  document.getElementById("matched").textContent = "";
}
function search() {
  var term = window.prompt("Search frames (a regular expression):", "");
  if (term === null) return;
  clearSearch();
  if (term === "") return;
  var re;
  try { re = new RegExp(term); } catch (e) { document.getElementById("matched").textContent = "bad expression"; return; }
  var hit = {}, total = 0;
  for (var i = 1; i < frames.length; i++) {
    var f = frames[i];
    if (!re.test(f.n)) continue;
    f.g.querySelector("rect").style.fill = "rgb(230,0,230)";
    hit[i] = true;
    var p = f.p, inner = false;
    while (p > 0) { if (hit[p]) { inner = true; break; } p = frames[p].p; }
    if (!inner) total += f.v;
  }
  var all = frames[0].v;
  document.getElementById("matched").textContent = "Matched: " + (all > 0 ? (100 * total / all).toFixed(1) : "0") + "% of all";
}
window.addEventListener("load", init);
]]

-- render(tree, opts) -> the SVG text. opts: title, subtitle, wall_us (for
-- the tooltips' share of wall time), min_px (narrower boxes are left out).
function M.render(root, opts)
    opts = opts or {}
    local wall = opts.wall_us or root.value
    local min_w = (opts.min_px or 0.1) / (WIDTH - 2 * PAD)
    local total = root.value > 0 and root.value or 1
    local items, depth_max = {}, 0

    -- walk in order, children left to right by the order they were first seen,
    -- the groups in apr.trace.groups.TOP order
    local function walk(n, x, depth, parent, group, parent_value)
        local w = n.value / total
        if depth > 0 and w < min_w then return end
        local idx = #items
        items[#items + 1] = { n = n, x = x, w = w, d = depth, p = parent, group = group, pv = parent_value }
        if depth > depth_max then depth_max = depth end
        local cx = x
        for _, name in ipairs(n.order) do
            local c = n.children[name]
            walk(c, cx, depth + 1, idx, group or (depth == 0 and name) or nil, n.value)
            cx = cx + c.value / total
        end
    end
    walk(root, 0, 0, 0, nil, root.value)

    local height = TOP + (depth_max + 1) * ROW + 2 * PAD
    local out = {}
    local function put(s) out[#out + 1] = s end
    put('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n')
    put(string.format('<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" ' ..
        'viewBox="0 0 %d %d" font-family="monospace" font-size="12">\n', WIDTH, height, WIDTH, height))
    put('<style>g.f:hover rect { stroke: #000; stroke-width: 0.8; } g.f { cursor: pointer; } ' ..
        '.btn { cursor: pointer; fill: #1a5fb4; } text { dominant-baseline: middle; }</style>\n')
    put('<script type="text/ecmascript"><![CDATA[' .. SCRIPT .. ']]></script>\n')
    put(string.format('<rect x="0" y="0" width="%d" height="%d" fill="#fbfbf8"/>\n', WIDTH, height))
    put(string.format('<text x="%d" y="18" font-size="15" font-weight="bold">%s</text>\n', PAD, esc(opts.title or "apr trace")))
    put(string.format('<text x="%d" y="38" fill="#444">%s</text>\n', PAD, esc(opts.subtitle or "")))
    put(string.format('<text id="search" class="btn" x="%d" y="18" text-anchor="end">Search</text>\n', WIDTH - PAD))
    put(string.format('<text id="reset" class="btn" x="%d" y="18" text-anchor="end" style="display:none">Reset zoom</text>\n',
        WIDTH - PAD - 70))
    put(string.format('<text id="matched" x="%d" y="38" text-anchor="end" fill="#700070"></text>\n', WIDTH - PAD))

    local span = WIDTH - 2 * PAD
    for i, it in ipairs(items) do
        local n = it.n
        local px, pw = PAD + it.x * span, it.w * span
        local y = TOP + it.d * ROW
        local name = n.name
        local tip
        if it.d == 0 then
            tip = string.format("all: %s in all groups; %s wall time (groups overlap: the CPU waits while the GPU works)",
                fmt_time(n.value), fmt_time(wall))
        else
            tip = string.format("%s\n%s, %.1f%% of wall time, %.1f%% of %s", name, fmt_time(n.value),
                wall > 0 and 100 * n.value / wall or 0, it.pv > 0 and 100 * n.value / it.pv or 0,
                items[it.p + 1].n.name)
            if n.count > 0 then tip = tip .. string.format(", %s %s", fmt_count(n.count), n.count == 1 and "time" or "times") end
            if n.self > 0 and #n.order > 0 then tip = tip .. string.format(" (self %s)", fmt_time(n.self)) end
        end
        local fill = it.d == 0 and "hsl(0,0%,80%)" or color(it.group or name, name)
        local chars = math.floor((pw - 6) / FONT_W)
        local text = chars >= 3 and (#name <= chars and name or cut(name, chars - 2) .. "..") or ""
        put(string.format('<g class="f" data-x="%.6f" data-w="%.6f" data-v="%.3f" data-p="%d" data-d="%d" data-n="%s">' ..
            '<title>%s</title><rect x="%.2f" y="%d" width="%.2f" height="%d" rx="2" fill="%s"/>' ..
            '<text x="%.2f" y="%.1f">%s</text></g>\n',
            it.x, it.w, n.value, it.p, it.d, esc(name), esc(tip), px, y, math.max(pw - 0.5, 0.1), ROW - 1, fill,
            px + 3, y + ROW / 2, esc(text)))
        local _ = i
    end
    put('</svg>\n')
    return table.concat(out)
end

M.fmt_time = fmt_time
M.fmt_count = fmt_count

return M
