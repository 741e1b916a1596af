-- cli/args.lua — command-line parsing for apr's commands.
--
-- A command declares its options once; the same declaration parses argv,
-- validates values and prints --help, so the help text can never disagree
-- with what is accepted.
--
--   options = {
--     { "json",   help = "print JSON" },                          -- a flag
--     { "seed",   value = "N", type = "integer", default = 0, help = "..." },
--     { "layout", value = "NAME", choices = { "q4_k_m", "f16" }, help = "..." },
--     { "stop",   value = "TEXT", multiple = true, help = "..." },  -- repeatable
--   }
--   positional = { min = 1, max = 1 }
--
-- parse() returns a table of options (dashes become underscores) with the
-- positional arguments at [1..n], or raises a usage error (exit code 2).
local M = {}

-- A usage error carries its own type so cli.lua can exit with code 2.
local UsageError = {}
UsageError.__index = UsageError
UsageError.__tostring = function(e) return e.message end
M.UsageError = UsageError

function M.usage_error(fmt, ...)
    error(setmetatable({ message = string.format(fmt, ...) }, UsageError), 0)
end

function M.is_usage_error(e) return getmetatable(e) == UsageError end

local SIZE_UNITS = { [""] = 1, K = 2 ^ 10, M = 2 ^ 20, G = 2 ^ 30, T = 2 ^ 40 }

-- Converts an option's text to its declared type, or raises a usage error.
local function convert(opt, text)
    local t = opt.type or "string"
    if t == "integer" then
        local n = tonumber(text)
        if not n or n ~= math.floor(n) or not text:match("^%s*[-+]?%d+%s*$") then
            M.usage_error("--%s expects a whole number, got '%s'", opt[1], text)
        end
        if opt.min and n < opt.min then M.usage_error("--%s must be at least %d, got %d", opt[1], opt.min, n) end
        if opt.max and n > opt.max then M.usage_error("--%s must be at most %d, got %d", opt[1], opt.max, n) end
        return n
    elseif t == "number" then
        local n = tonumber(text)
        if not n or n ~= n then M.usage_error("--%s expects a number, got '%s'", opt[1], text) end
        if opt.min and n < opt.min then M.usage_error("--%s must be at least %g, got %g", opt[1], opt.min, n) end
        if opt.max and n > opt.max then M.usage_error("--%s must be at most %g, got %g", opt[1], opt.max, n) end
        return n
    elseif t == "size" then
        -- 24G, 512M, 1.5G, 1048576 (bytes); binary units, as nvidia-smi counts.
        local num, unit = text:upper():match("^%s*([%d%.]+)%s*([KMGT]?)I?B?%s*$")
        local n = num and tonumber(num)
        if not n then M.usage_error("--%s expects a size such as 24G or 512M, got '%s'", opt[1], text) end
        return math.floor(n * SIZE_UNITS[unit])
    end
    if opt.choices then
        for _, c in ipairs(opt.choices) do
            if c == text then return text end
        end
        M.usage_error("--%s must be one of %s, got '%s'", opt[1], table.concat(opt.choices, ", "), text)
    end
    return text
end

local function key(name) return (name:gsub("-", "_")) end

-- parse(spec, argv) -> options table. argv is a plain Lua array of strings.
-- spec.stop_at_positional: everything from the first positional on is
-- passed through untouched (for `apr run SCRIPT args...`).
function M.parse(spec, argv)
    local byname, out = {}, {}
    for _, opt in ipairs(spec.options or {}) do
        byname[opt[1]] = opt
        if opt.short then byname[opt.short] = opt end
        if opt.multiple then
            out[key(opt[1])] = {}
        elseif opt.default ~= nil then
            out[key(opt[1])] = opt.default
        end
    end
    local i, positional = 1, {}
    while i <= #argv do
        local a = argv[i]
        if a == "--" then
            for j = i + 1, #argv do positional[#positional + 1] = argv[j] end
            break
        elseif a == "-h" or a == "--help" then
            out.help = true
        elseif a:sub(1, 1) == "-" and #a > 1 then
            local name, inline = a:match("^%-%-?([^=]+)=(.*)$")
            name = name or a:match("^%-%-?(.+)$")
            local opt = byname[name]
            if not opt then M.usage_error("unknown option '%s'", a) end
            local value = true
            if opt.value then
                if inline then
                    value = inline
                else
                    i = i + 1
                    value = argv[i]
                    if value == nil then M.usage_error("--%s needs a value (%s)", opt[1], opt.value) end
                end
                value = convert(opt, value)
            elseif inline then
                M.usage_error("--%s takes no value", opt[1])
            end
            if opt.multiple then
                table.insert(out[key(opt[1])], value)
            else
                out[key(opt[1])] = value
            end
        else
            positional[#positional + 1] = a
            if spec.stop_at_positional then
                for j = i + 1, #argv do positional[#positional + 1] = argv[j] end
                break
            end
        end
        i = i + 1
    end
    if out.help then return out end
    local p = spec.positional or { min = 0, max = 0 }
    if #positional < (p.min or 0) then
        M.usage_error("missing %s", p.name or "argument")
    end
    if p.max and #positional > p.max then
        M.usage_error("unexpected argument '%s'", positional[p.max + 1])
    end
    for _, opt in ipairs(spec.options or {}) do
        if opt.required and out[key(opt[1])] == nil then
            M.usage_error("--%s is required", opt[1])
        end
    end
    for j, v in ipairs(positional) do out[j] = v end
    return out
end

-- A default as the user would type it: sizes in the largest whole unit.
local function default_text(opt)
    if opt.type == "size" then
        for _, unit in ipairs({ "T", "G", "M", "K" }) do
            local n = opt.default / SIZE_UNITS[unit]
            if n >= 1 and n == math.floor(n) then return string.format("%d%s", n, unit) end
        end
    end
    return tostring(opt.default)
end

-- The --help text: usage line, summary, description and one line per option.
function M.help(name, spec)
    local lines = { "usage: " .. spec.usage, "", spec.summary }
    if spec.description then lines[#lines + 1] = ""; lines[#lines + 1] = spec.description end
    lines[#lines + 1] = ""
    lines[#lines + 1] = "options:"
    for _, opt in ipairs(spec.options or {}) do
        local left = "  --" .. opt[1] .. (opt.value and (" " .. opt.value) or "")
        if opt.short then left = "  -" .. opt.short .. "," .. left:sub(2) end
        local help = opt.help or ""
        if opt.choices then help = help .. " (" .. table.concat(opt.choices, "|") .. ")" end
        if opt.default ~= nil and opt.default ~= false then
            help = help .. " [default: " .. default_text(opt) .. "]"
        end
        lines[#lines + 1] = string.format("%-28s %s", left, help)
    end
    lines[#lines + 1] = string.format("%-28s %s", "  -h, --help", "show this help")
    if spec.examples then
        lines[#lines + 1] = ""
        lines[#lines + 1] = "examples:"
        for _, e in ipairs(spec.examples) do lines[#lines + 1] = "  " .. e end
    end
    return table.concat(lines, "\n") .. "\n"
end

return M
