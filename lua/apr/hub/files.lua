-- hub/files.lua — which files of a repository a quantization names.
--
-- GGUF repositories name their files after the quantization:
-- Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf (bartowski), qwen2.5-coder-32b-
-- instruct-q4_k_m-00001-of-00005.gguf (Qwen, split), model.Q4_K_M.gguf,
-- Q8_0/...-Q8_0-00001-of-00002.gguf (a split set in a folder). A quant
-- matches, case-insensitively, a run of the file's stem that is bounded by
-- the start, the end, '-' or '.' (not '_': Q4_K must not pick Q4_K_M, nor
-- Q4_K_M pick IQ4_K_M). Split parts belong to one set, fetched whole and
-- named by its first part. mmproj-* files (vision projectors) are not
-- models and are left out unless named with --file.
--
-- The same selection runs on a hub listing (apr pull) and on a snapshot in
-- the cache (ORG/REPO:QUANT offline), so both pick the same file.
local M = {}

local SPLIT = "^(.-)%-(%d%d%d%d%d)%-of%-(%d%d%d%d%d)%.gguf$"

local function basename(p) return p:match("([^/]+)$") end

-- The stem that names a file's set: no folder, no .gguf, no split suffix.
local function stem(path)
    local b = basename(path)
    local s = b:match(SPLIT)
    if s then return s end
    return (b:gsub("%.gguf$", ""))
end

-- split_part(path) -> index, count for "-0000i-of-0000n.gguf", else nil.
function M.split_part(path)
    local _, i, n = basename(path):match(SPLIT)
    if i then return tonumber(i), tonumber(n) end
end

-- Does quant name this file?
function M.matches(path, quant)
    local s, q = stem(path):lower(), quant:lower()
    local from = 1
    while true do
        local a, b = s:find(q, from, true)
        if not a then return false end
        local before, after = s:sub(a - 1, a - 1), s:sub(b + 1, b + 1)
        if (a == 1 or before == "-" or before == ".") and (b == #s or after == "-" or after == ".") then
            return true
        end
        from = a + 1
    end
end

-- The quantization a file's name gives, for listings: the last token of
-- its stem that looks like one (Q4_K_M, IQ4_XS, Q8_0, F16, BF16, TQ1_0).
function M.quant_label(path)
    local best
    for tok in stem(path):gmatch("[^%-%.]+") do
        local u = tok:upper()
        if u:match("^I?Q%d") or u:match("^TQ%d") or u == "F16" or u == "F32" or u == "BF16" then best = u end
    end
    return best
end

local function is_model(path)
    return path:lower():match("%.gguf$") and not basename(path):lower():match("^mmproj")
end

-- Groups GGUF paths into sets: { name = first part or the file, parts = {...},
-- complete = bool, label = quant }.
local function sets(paths)
    local by, order = {}, {}
    for _, p in ipairs(paths) do
        local i, n = M.split_part(p)
        local key = i and (p:match("^(.*/)") or "") .. stem(p) .. "#" .. n or p
        local s = by[key]
        if not s then
            s = { parts = {}, count = n or 1, label = M.quant_label(p) }
            by[key] = s
            order[#order + 1] = key
        end
        s.parts[i or 1] = p
    end
    local out = {}
    for _, key in ipairs(order) do
        local s = by[key]
        local list, complete = {}, true
        for i = 1, s.count do
            if s.parts[i] then list[#list + 1] = s.parts[i] else complete = false end
        end
        out[#out + 1] = { name = list[1], parts = list, complete = complete, count = s.count, label = s.label }
    end
    return out
end

-- The quantizations a listing offers, sorted ("Q4_K_M", "Q8_0", ...).
function M.quants(paths)
    local seen, out = {}, {}
    for _, p in ipairs(paths) do
        if is_model(p) then
            local q = M.quant_label(p)
            if q and not seen[q] then seen[q] = true; out[#out + 1] = q end
        end
    end
    table.sort(out)
    return out
end

local function available(paths)
    local q = M.quants(paths)
    if #q == 0 then return "" end
    return " (available: " .. table.concat(q, ", ") .. ")"
end

-- select(paths, { quant = Q, file = NAME }) -> list of paths (a split set's
-- parts in order, else one), or nil and a message. file names a path of the
-- listing (or a base name found once); without quant and file, the
-- repository must hold a single model.
function M.select(paths, want)
    want = want or {}
    if want.file then
        local found
        for _, p in ipairs(paths) do
            if p == want.file then found = p end
        end
        if not found then
            local hits = {}
            for _, p in ipairs(paths) do
                if basename(p) == want.file then hits[#hits + 1] = p end
            end
            if #hits > 1 then return nil, "several files are named " .. want.file .. ": " .. table.concat(hits, ", ") end
            found = hits[1]
        end
        if not found then return nil, "no file " .. want.file end
        if not M.split_part(found) then return { found } end
        for _, s in ipairs(sets(paths)) do
            for _, p in ipairs(s.parts) do
                if p == found then
                    if not s.complete then return nil, "split set " .. s.name .. " lacks parts" end
                    return s.parts
                end
            end
        end
    end
    local models = {}
    for _, p in ipairs(paths) do
        if is_model(p) then models[#models + 1] = p end
    end
    if #models == 0 then return nil, "no GGUF file" end
    local picked = {}
    for _, s in ipairs(sets(models)) do
        if not want.quant or M.matches(s.name, want.quant) then picked[#picked + 1] = s end
    end
    if #picked == 0 then
        return nil, "no GGUF file for quantization " .. want.quant .. available(models)
    end
    if #picked > 1 then
        local names = {}
        for i, s in ipairs(picked) do names[i] = s.name end
        if not want.quant then
            return nil, "several GGUF files: choose one with --quant" .. available(models)
        end
        return nil, "several files match " .. want.quant .. ": " .. table.concat(names, ", ") ..
            " (choose one with --file)"
    end
    local s = picked[1]
    if not s.complete then
        return nil, string.format("split set %s lacks parts (%d of %d present)", s.name, #s.parts, s.count)
    end
    return s.parts
end

return M
