-- apr inspect FILE: a model file's metadata, or (--tensors) its tensor
-- table with a per-type summary, and (--stats) statistics of every tensor's
-- dequantized values.
local core = require "apr.core"
local cli = require "apr.cli"
local mi = require "apr.model_info"
local C, ffi = core.C, core.ffi

local M = {}

M.spec = {
    usage = "apr inspect FILE [--tensors] [--stats] [--json]",
    summary = "Show a model file's metadata, or its tensor table and per-type summary.",
    description = "Without --tensors it lists the metadata (long arrays abbreviated). --stats\n" ..
                  "dequantizes every tensor on all cores and adds min, max, mean, std and the\n" ..
                  "NaN/Inf counts (Ctrl+C stops it).",
    options = {
        { "tensors", help = "the tensor table and a summary per element type" },
        { "stats", help = "with --tensors: statistics of each tensor's values" },
        { "json", help = "print one JSON object" },
    },
    positional = { min = 1, max = 1, name = "FILE" },
    examples = {
        "apr inspect tests/fixtures/models/tiny-q4_k_m.gguf",
        "apr inspect tests/fixtures/models/tiny-q4_k_m.gguf --tensors --stats",
    },
}

local stats_box = ffi.new("apr_stats")

-- Statistics of one tensor, or nil and why not (a type apr cannot
-- dequantize); Ctrl+C ends the command.
local function tensor_stats(f, t)
    if C.apr_dtype_can_dequantize(t.dtype) == 0 then return nil, "cannot dequantize " .. t.type end
    local data, err = f:tensor_data(t.name)
    if not data then return nil, err end
    local s = C.apr_tensor_stats(t.dtype, data, t.elements, stats_box)
    f:release_tensor(t.name)
    if s == C.APR_ERR_CANCELLED then cli.fail("interrupted") end
    if s ~= 0 then return core.failure(s) end
    -- With no finite element min/max/mean/std are NaN: left out (JSON has no NaN).
    local function finite(x) return (x == x and x ~= math.huge and x ~= -math.huge) and x or nil end
    return {
        min = finite(stats_box.min), max = finite(stats_box.max), mean = finite(stats_box.mean),
        std = finite(stats_box.std), nan = tonumber(stats_box.n_nan), inf = tonumber(stats_box.n_inf),
    }
end

-- Per element type: count, bytes, share of all tensor bytes; largest first.
local function by_type(tensors)
    local acc, total = {}, 0
    for _, t in ipairs(tensors) do
        local a = acc[t.type] or { type = t.type, count = 0, bytes = 0, parameters = 0 }
        acc[t.type] = a
        a.count, a.bytes, a.parameters = a.count + 1, a.bytes + t.bytes, a.parameters + t.elements
        total = total + t.bytes
    end
    local list = {}
    for _, a in pairs(acc) do
        a.share = total > 0 and a.bytes / total or 0
        list[#list + 1] = a
    end
    table.sort(list, function(x, y) return x.bytes > y.bytes or (x.bytes == y.bytes and x.type < y.type) end)
    return list, total
end

-- A metadata value in one short line.
local function short(v)
    if type(v) == "table" then
        local n = #v
        local head = {}
        for i = 1, math.min(n, 4) do head[i] = short(v[i]) end
        return string.format("[%s%s] (%d)", table.concat(head, ", "), n > 4 and ", ..." or "", n)
    elseif type(v) == "string" then
        local s = v:gsub("[%c\\\"]", function(c) return string.format("\\x%02x", c:byte()) end)
        if #s > 60 then s = s:sub(1, 57) .. "..." end
        return '"' .. s .. '"'
    end
    return tostring(v)
end

local function show_metadata(f, json)
    local keys = f:keys()
    if json then
        local list = {}
        for _, k in ipairs(keys) do
            local v, ty = f:get(k)
            if type(v) == "cdata" then v = tostring(v):gsub("U?LL$", "") end
            list[#list + 1] = { key = k, type = ty, value = v }
        end
        io.stdout:write(require("cjson").encode({ path = f.path, format = f.format .. " v" .. f.version,
            metadata = list }), "\n")
        return
    end
    if f.gguf_version then
        io.stdout:write(string.format("%s: APR v%d of a GGUF v%d (%d bytes), %d keys, %d tensors in %d chunks\n",
            f.path, f.version, f.gguf_version, f.gguf_size, #keys, #f:tensors(), f.n_chunks))
    else
        io.stdout:write(string.format("%s: %s v%d, %d keys, %d tensors%s, data at byte %d (alignment %d)\n",
            f.path, f.format, f.version, #keys, #f:tensors(),
            #f.files > 1 and string.format(" in %d files", #f.files) or "", f.data_offset, f.alignment))
    end
    for _, k in ipairs(keys) do
        local v, ty = f:get(k)
        local text = ty == "float32" and string.format("%.7g", v) or short(v)
        io.stdout:write(string.format("  %-44s %-14s %s\n", k, ty, text))
    end
end

local function show_tensors(f, opts)
    local tensors = f:tensors()
    if opts.stats then
        local progress = require("apr.cli.term").progress("stats")
        for i, t in ipairs(tensors) do
            t.stats, t.stats_error = tensor_stats(f, t)
            progress.update(i, #tensors)
        end
        progress.finish()
    end
    local types, total = by_type(tensors)
    if opts.json then
        local out = {}
        for i, t in ipairs(tensors) do
            out[i] = { name = t.name, type = t.type, shape = t.shape, bytes = t.bytes, offset = t.offset,
                       stats = t.stats, codec = t.codec, stored = t.stored_bytes, filter = t.filter, chunks = t.chunks }
        end
        io.stdout:write(require("cjson").encode({ path = f.path, tensors = out, types = types, bytes = total,
            parameters = mi.param_count(tensors) }), "\n")
        return
    end
    local w = 6
    for _, t in ipairs(tensors) do w = math.max(w, #t.name) end
    local lines = {}
    local apr = f.gguf_version ~= nil
    local head = string.format("%-" .. w .. "s  %-6s %-20s %12s", "NAME", "TYPE", "SHAPE", "BYTES")
    if apr then head = head .. string.format("  %-5s %12s %6s %6s", "CODEC", "STORED", "RATIO", "CHUNKS") end
    if opts.stats then head = head .. string.format("  %10s %10s %10s %10s %5s %5s", "MIN", "MAX", "MEAN", "STD", "NAN", "INF") end
    lines[1] = head
    for _, t in ipairs(tensors) do
        local line = string.format("%-" .. w .. "s  %-6s %-20s %12d", t.name, t.type, mi.shape_text(t.shape), t.bytes)
        if apr then
            line = line .. string.format("  %-5s %12d %5.1f%% %6d", t.codec, t.stored_bytes,
                t.bytes > 0 and 100 * t.stored_bytes / t.bytes or 100, t.chunks)
        end
        if t.stats then
            local s = t.stats
            local nan = 0 / 0
            line = line .. string.format("  %10.4g %10.4g %10.4g %10.4g %5d %5d", s.min or nan, s.max or nan,
                s.mean or nan, s.std or nan, s.nan, s.inf)
        elseif opts.stats then
            line = line .. "  " .. tostring(t.stats_error)
        end
        lines[#lines + 1] = line
    end
    lines[#lines + 1] = string.format("%d tensors, %s parameters, %s", #tensors,
        mi.format_count(mi.param_count(tensors)), mi.format_size(total))
    lines[#lines + 1] = ""
    lines[#lines + 1] = string.format("%-6s %6s %14s %7s", "TYPE", "COUNT", "BYTES", "SHARE")
    for _, a in ipairs(types) do
        lines[#lines + 1] = string.format("%-6s %6d %14d %6.1f%%", a.type, a.count, a.bytes, 100 * a.share)
    end
    io.stdout:write(table.concat(lines, "\n"), "\n")
end

function M.run(opts)
    if opts.stats and not opts.tensors then
        require("apr.cli.args").usage_error("--stats needs --tensors")
    end
    local f = mi.open(opts[1])
    if opts.tensors then show_tensors(f, opts) else show_metadata(f, opts.json) end
    return 0
end

return M
