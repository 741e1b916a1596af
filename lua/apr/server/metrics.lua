-- server/metrics.lua — counters, gauges and histograms in Prometheus' text
-- exposition format (version 0.0.4), as `promtool check metrics` accepts it.
--
--   local reg = metrics.new()
--   local hits = reg:counter("apr_http_requests_total", "Requests answered.", { "route", "status" })
--   hits:inc(1, "/v1/completions", "200")
--   local ttft = reg:histogram("apr_time_to_first_token_seconds", "...", metrics.latency_buckets)
--   ttft:observe(0.031)
--   reg:gauge("apr_requests_running", "...", {}, function(set) set(engine_running()) end)
--   reg:counter("apr_preemptions_total", "...", {}, function(set) set(engine_preemptions()) end)
--   res:send(200, reg:render(), { ["Content-Type"] = metrics.content_type })
--
-- Names follow Prometheus' conventions: base units (seconds, bytes),
-- counters end in _total. Gauges, and counters whose totals are kept
-- elsewhere (the engine's), may be read at scrape time by a collect
-- function, so nothing has to be kept in step by hand.
local M = {}

M.content_type = "text/plain; version=0.0.4; charset=utf-8"

-- Seconds, from 1 ms to 60 s: spans a token on a GPU and a long CPU prefill.
M.latency_buckets = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 }

local function escape(v)
    return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

-- Prometheus prints floats Go's way; integral values as integers, the rest
-- with enough digits to round-trip.
local function number(v)
    if v ~= v then return "NaN" end
    if v == math.huge then return "+Inf" end
    if v == -math.huge then return "-Inf" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
    for digits = 15, 17 do
        local text = string.format("%." .. digits .. "g", v)
        if tonumber(text) == v then return text end
    end
end

local function label_text(names, values, extra_name, extra_value)
    local parts = {}
    for i, n in ipairs(names) do parts[#parts + 1] = n .. '="' .. escape(values[i] or "") .. '"' end
    if extra_name then parts[#parts + 1] = extra_name .. '="' .. extra_value .. '"' end
    if #parts == 0 then return "" end
    return "{" .. table.concat(parts, ",") .. "}"
end

------------------------------------------------------------------ families

local Family = {}
Family.__index = Family

-- The series for a list of label values (created at first use).
function Family:series(values)
    local key = table.concat(values, "\0")
    local s = self.by_key[key]
    if not s then
        assert(#values == #self.labels, "metric " .. self.name .. " takes " .. #self.labels .. " labels")
        s = { values = values, value = 0 }
        if self.kind == "histogram" then
            s.counts = {}
            for i = 1, #self.buckets do s.counts[i] = 0 end
            s.sum, s.count = 0, 0
        end
        self.by_key[key] = s
        self.order[#self.order + 1] = s
    end
    return s
end

-- counter:inc([n [, label values...]])
function Family:inc(n, ...)
    local s = self:series({ ... })
    n = n or 1
    assert(n >= 0 or self.kind ~= "counter", "a counter only goes up")
    s.value = s.value + n
end

-- gauge:set(v [, label values...])
function Family:set(v, ...)
    self:series({ ... }).value = v
end

-- histogram:observe(v [, label values...])
function Family:observe(v, ...)
    local s = self:series({ ... })
    for i, le in ipairs(self.buckets) do
        if v <= le then s.counts[i] = s.counts[i] + 1 end
    end
    s.sum = s.sum + v
    s.count = s.count + 1
end

function Family:render(out)
    if self.collect then
        -- A gauge read now: collect(set) calls set(value, labels...).
        self.by_key, self.order = {}, {}
        self.collect(function(v, ...) self:set(v, ...) end)
    end
    out[#out + 1] = "# HELP " .. self.name .. " " .. self.help:gsub("\\", "\\\\"):gsub("\n", "\\n")
    out[#out + 1] = "# TYPE " .. self.name .. " " .. self.kind
    for _, s in ipairs(self.order) do
        if self.kind == "histogram" then
            for i, le in ipairs(self.buckets) do
                out[#out + 1] = self.name .. "_bucket" .. label_text(self.labels, s.values, "le", number(le)) ..
                    " " .. number(s.counts[i])
            end
            out[#out + 1] = self.name .. "_bucket" .. label_text(self.labels, s.values, "le", "+Inf") ..
                " " .. number(s.count)
            out[#out + 1] = self.name .. "_sum" .. label_text(self.labels, s.values) .. " " .. number(s.sum)
            out[#out + 1] = self.name .. "_count" .. label_text(self.labels, s.values) .. " " .. number(s.count)
        else
            out[#out + 1] = self.name .. label_text(self.labels, s.values) .. " " .. number(s.value)
        end
    end
end

------------------------------------------------------------------ registry

local Registry = {}
Registry.__index = Registry

function M.new()
    return setmetatable({ families = {}, by_name = {} }, Registry)
end

local function add(self, kind, name, help, labels, extra)
    assert(name:match("^[a-zA-Z_:][a-zA-Z0-9_:]*$"), "bad metric name " .. name)
    assert(not self.by_name[name], "metric " .. name .. " registered twice")
    local f = setmetatable({ kind = kind, name = name, help = help, labels = labels or {},
                             by_key = {}, order = {} }, Family)
    for k, v in pairs(extra or {}) do f[k] = v end
    self.by_name[name] = f
    self.families[#self.families + 1] = f
    -- A family without labels shows its zero from the start.
    if #f.labels == 0 and not f.collect then f:series({}) end
    return f
end

-- counter(name, help, labels [, collect]): collect(set), when given, runs
-- at each render and reads a total kept elsewhere (it must never go down).
function Registry:counter(name, help, labels, collect)
    assert(name:match("_total$"), "counter names end in _total: " .. name)
    return add(self, "counter", name, help, labels, { collect = collect })
end

-- gauge(name, help, labels [, collect]): collect(set) runs at each render.
function Registry:gauge(name, help, labels, collect)
    return add(self, "gauge", name, help, labels, { collect = collect })
end

function Registry:histogram(name, help, buckets, labels)
    buckets = buckets or M.latency_buckets
    for i = 2, #buckets do assert(buckets[i] > buckets[i - 1], "histogram buckets must increase") end
    return add(self, "histogram", name, help, labels, { buckets = buckets })
end

function Registry:get(name) return self.by_name[name] end

function Registry:render()
    local out = {}
    for _, f in ipairs(self.families) do f:render(out) end
    return table.concat(out, "\n") .. "\n"
end

return M
