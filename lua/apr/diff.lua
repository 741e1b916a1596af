-- diff.lua — what differs between two model files, GGUF or APR in any mix.
--
--   local r = assert(diff.files("m.gguf", "m.apr"))
--   r.equivalent                 --> true when nothing below differs
--   r.metadata, r.tokenizer, r.chat_template, r.tensors
--
-- Metadata values are compared as their encoded bytes (every key but the
-- tokenizer's, which are a section of their own, as is the chat template).
-- Tensors are matched by name; the same name with the same shape is
-- compared element by element on all cores (runtime/core/compare.c): bit
-- for bit when the types agree, by dequantized value (the largest |a - b|)
-- when they do not. Container matters (format, codec, alignment, offsets)
-- are not differences: an APR file and the GGUF it came from are
-- equivalent.
local core = require "apr.core"
local file = require "apr.file"
local C, ffi = core.C, core.ffi

local M = {}

local key_box = ffi.new("const char *[1]")
local value = ffi.new("apr_gguf_value")
local cmp = ffi.new("apr_compare")
local u8p = ffi.typeof("const uint8_t *")
local PREFIX = { [tonumber(C.APR_GGUF_STRING)] = 8, [tonumber(C.APR_GGUF_ARRAY)] = 12 }

-- key -> { bytes = encoded value, type = number } of every key of f.
local function encoded(f)
    local h, out, order = f:handle(), {}, {}
    for i = 0, tonumber(C.apr_source_n_kv(h)) - 1 do
        core.check(C.apr_source_kv(h, i, key_box, value))
        local key, t = ffi.string(key_box[0]), tonumber(value.type)
        local pre = PREFIX[t] or 0
        out[key] = { type = t, bytes = ffi.string(ffi.cast(u8p, value.data) - pre, tonumber(value.size)) }
        order[#order + 1] = key
    end
    return out, order
end

local function section_of(key)
    if key == "tokenizer.chat_template" then return "chat_template" end
    if key:sub(1, 10) == "tokenizer." then return "tokenizer" end
    return "metadata"
end

-- A value in one short line, for the report.
local function short(f, key)
    local v = f:get(key)
    if type(v) == "table" then return string.format("[%d elements]", #v) end
    if type(v) == "string" then
        local s = v:gsub("[%c\\\"]", function(c) return string.format("\\x%02x", c:byte()) end)
        if #s > 48 then s = s:sub(1, 45) .. "..." end
        return '"' .. s .. '"'
    end
    return tostring(v)
end

local function compare_metadata(a, b)
    local ea, oa = encoded(a)
    local eb, ob = encoded(b)
    local sections = {
        metadata = { keys = 0, differences = {} },
        tokenizer = { keys = 0, differences = {} },
        chat_template = { keys = 0, differences = {} },
    }
    for _, k in ipairs(oa) do
        local s = sections[section_of(k)]
        s.keys = s.keys + 1
        local x, y = ea[k], eb[k]
        if not y then
            s.differences[#s.differences + 1] = { key = k, what = "only in A" }
        elseif x.type ~= y.type or x.bytes ~= y.bytes then
            s.differences[#s.differences + 1] = { key = k, what = "differs", a = short(a, k), b = short(b, k) }
        end
    end
    for _, k in ipairs(ob) do
        if not ea[k] then
            local s = sections[section_of(k)]
            s.differences[#s.differences + 1] = { key = k, what = "only in B" }
        end
    end
    -- summaries of what is being compared, for the report
    local tokens = a:get("tokenizer.ggml.tokens")
    local merges = a:get("tokenizer.ggml.merges")
    sections.tokenizer.tokens = type(tokens) == "table" and #tokens or nil
    sections.tokenizer.merges = type(merges) == "table" and #merges or nil
    local tmpl = a:get("tokenizer.chat_template")
    sections.chat_template.bytes = type(tmpl) == "string" and #tmpl or nil
    return sections
end

local function shape_text(shape) return "[" .. table.concat(shape, ", ") .. "]" end

local function same_shape(x, y)
    if #x.shape ~= #y.shape then return false end
    for i = 1, #x.shape do if x.shape[i] ~= y.shape[i] then return false end end
    return true
end


local function compare_tensors(a, b, opts)
    local ta, tb = a:tensors(), b:tensors()
    local by_b = {}
    for _, t in ipairs(tb) do by_b[t.name] = t end
    local r = { count_a = #ta, count_b = #tb, differences = {}, bit_identical = 0, compared = 0 }
    local seen, total, done = {}, 0, 0
    for _, t in ipairs(ta) do if by_b[t.name] then total = total + t.bytes end end
    for _, x in ipairs(ta) do
        seen[x.name] = true
        local y = by_b[x.name]
        if not y then
            r.differences[#r.differences + 1] = { name = x.name, what = "only in A" }
        elseif not same_shape(x, y) then
            r.differences[#r.differences + 1] = { name = x.name, what = "shape",
                a = x.type .. " " .. shape_text(x.shape), b = y.type .. " " .. shape_text(y.shape) }
        else
            if C.apr_interrupted() ~= 0 then return nil, "interrupted" end
            local pa, ea = a:tensor_data(x.name)
            if not pa then return nil, ea end
            local pb, eb = b:tensor_data(y.name)
            if not pb then a:release_tensor(x.name) return nil, eb end
            local s = C.apr_tensor_compare(x.dtype, pa, y.dtype, pb, x.elements, cmp)
            -- one decoded tensor at a time, whatever the model's size
            a:release_tensor(x.name)
            b:release_tensor(y.name)
            r.compared = r.compared + 1
            if s ~= 0 then
                local _, msg = core.failure(s)
                r.differences[#r.differences + 1] = { name = x.name, what = "not comparable", why = msg,
                    a = x.type, b = y.type }
            elseif cmp.bit_equal ~= 0 then
                r.bit_identical = r.bit_identical + 1
            elseif tonumber(cmp.n_diff) > 0 or x.type ~= y.type then
                r.differences[#r.differences + 1] = {
                    name = x.name, what = x.type == y.type and "data" or "type", a = x.type, b = y.type,
                    elements = x.elements, differing = tonumber(cmp.n_diff), first = tonumber(cmp.first_diff),
                    max_abs_diff = cmp.measured ~= 0 and tonumber(cmp.max_abs_diff) or nil,
                    nan_mismatch = tonumber(cmp.nan_mismatch),
                }
            else
                -- same type, bytes differ, values equal (+0 and -0, say): not bit-identical
                r.differences[#r.differences + 1] = { name = x.name, what = "bits", a = x.type, b = y.type,
                    elements = x.elements, differing = 0, max_abs_diff = 0 }
            end
            done = done + x.bytes
            if opts.progress then opts.progress(done, total) end
        end
    end
    for _, y in ipairs(tb) do
        if not seen[y.name] then r.differences[#r.differences + 1] = { name = y.name, what = "only in B" } end
    end
    return r
end

local function describe(f)
    local d = { path = f.path, format = f.format .. " v" .. f.version, size = f.size }
    if f.format == "APR" then
        local codecs = {}
        for _, t in ipairs(f:tensors()) do codecs[t.codec] = true end
        d.source_sha256 = f.source_sha256
        local list = {}
        for c in pairs(codecs) do list[#list + 1] = c end
        table.sort(list)
        d.codecs = list
    end
    return d
end

-- files(path_a, path_b [, opts]) -> report, or nil and a message (a file
-- that does not open, "interrupted"). opts.progress(done, total) while
-- tensor data is compared.
function M.files(path_a, path_b, opts)
    opts = opts or {}
    local a, err = file.open(path_a)
    if not a then return nil, err end
    local b
    b, err = file.open(path_b)
    if not b then return nil, err end
    local sections = compare_metadata(a, b)
    local tensors
    tensors, err = compare_tensors(a, b, opts)
    if not tensors then return nil, err end
    local r = {
        a = describe(a), b = describe(b),
        metadata = sections.metadata, tokenizer = sections.tokenizer, chat_template = sections.chat_template,
        tensors = tensors,
    }
    r.equivalent = #r.metadata.differences == 0 and #r.tokenizer.differences == 0 and
        #r.chat_template.differences == 0 and #tensors.differences == 0
    return r
end

return M
