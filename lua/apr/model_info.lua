-- model_info.lua — what `apr info`, `inspect` and `verify` say about a
-- model file: hyperparameters, the file type's name, sizes in human units,
-- and how its tensors compare with what its architecture must have (the
-- runtime's table, apr.h "Architectures").
local M = {}

-- Opens path (or a hub reference, apr.model_path) for a command, or ends
-- it with exit 1 and the reader's one-line message (which names the file,
-- the problem and its byte offset).
function M.open(path)
    local resolved, rerr = require("apr.model_path").resolve(path)
    if not resolved then require("apr.cli").fail("%s", rerr) end
    local f, err = require("apr.file").open(resolved)
    if not f then require("apr.cli").fail("%s", err) end
    return f
end

-- llama.cpp's file types (enum llama_ftype in llama.h), as general.file_type
-- stores them: the name a model's quantization is known by.
M.FILE_TYPES = {
    [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
    [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
    [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S",
    [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M",
    [28] = "IQ2_S", [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M", [32] = "BF16", [36] = "TQ1_0",
    [37] = "TQ2_0",
}
local FTYPE_GUESSED = 1024  -- llama.cpp's flag for a type it inferred

-- Architecture names as their authors write them.
local ARCH_NAMES = { qwen2 = "Qwen2", llama = "Llama", qwen3 = "Qwen3", mistral = "Mistral", phi3 = "Phi3",
                     gemma = "Gemma", gemma2 = "Gemma2" }

-- The element type holding most of the bytes: { type, bytes }.
function M.dominant_type(tensors)
    local by = {}
    for _, t in ipairs(tensors) do by[t.type] = (by[t.type] or 0) + t.bytes end
    local best, bytes = nil, -1
    for ty, b in pairs(by) do
        if b > bytes or (b == bytes and ty < best) then best, bytes = ty, b end
    end
    return best, bytes
end

-- quantization(f, tensors) -> "Q4_K_M", from general.file_type, else the
-- dominant tensor type.
function M.quantization(f, tensors)
    local ft = f.metadata["general.file_type"]
    if type(ft) == "number" then
        local name = M.FILE_TYPES[ft % FTYPE_GUESSED]
        if name then return name end
    end
    return M.dominant_type(tensors) or "unknown"
end

-- Hyperparameters from the metadata (nil where absent): the fields
-- model/qwen2.c reads, under the architecture's prefix.
function M.hparams(f, tensors)
    local md = f.metadata
    local arch = md["general.architecture"]
    local p = type(arch) == "string" and (arch .. ".") or "?."
    local hp = {
        arch = arch,
        name = md["general.name"],
        n_layer = md[p .. "block_count"],
        n_ctx = md[p .. "context_length"],
        n_embd = md[p .. "embedding_length"],
        n_ff = md[p .. "feed_forward_length"],
        n_head = md[p .. "attention.head_count"],
        n_kv_head = md[p .. "attention.head_count_kv"],
        head_dim = md[p .. "attention.key_length"],
        rope_base = md[p .. "rope.freq_base"],
        rms_eps = md[p .. "attention.layer_norm_rms_epsilon"],
    }
    for k, v in pairs(hp) do
        if k ~= "arch" and k ~= "name" and type(v) ~= "number" then hp[k] = nil end
    end
    hp.n_kv_head = hp.n_kv_head or hp.n_head
    if not hp.head_dim and hp.n_embd and hp.n_head and hp.n_head > 0 then hp.head_dim = hp.n_embd / hp.n_head end
    local tokens = md["tokenizer.ggml.tokens"]
    if type(tokens) == "table" then hp.n_vocab = #tokens end
    for _, t in ipairs(tensors or {}) do
        if t.name == "token_embd.weight" and t.shape[2] then hp.n_vocab_embd = t.shape[2] end
    end
    hp.n_vocab = hp.n_vocab_embd or hp.n_vocab
    return hp
end

function M.arch_name(arch)
    return ARCH_NAMES[arch] or tostring(arch or "unknown")
end

function M.param_count(tensors)
    local n = 0
    for _, t in ipairs(tensors) do n = n + t.elements end
    return n
end

-- 19.8 GB, 1.5 MB, 512 bytes: decimal units, as model cards state sizes.
function M.format_size(bytes)
    if bytes >= 1e9 then return string.format("%.1f GB", bytes / 1e9) end
    if bytes >= 1e6 then return string.format("%.1f MB", bytes / 1e6) end
    if bytes >= 1e3 then return string.format("%.1f KB", bytes / 1e3) end
    return string.format("%d bytes", bytes)
end

-- 32.5B, 494M, 1.2M, 7.6K: how parameter counts are quoted.
function M.format_count(n)
    local function fmt(x, unit)
        return (x < 10 and string.format("%.1f", x) or string.format("%.0f", x)) .. unit
    end
    if n >= 1e9 then return string.format("%.1fB", n / 1e9) end
    if n >= 1e6 then return fmt(n / 1e6, "M") end
    if n >= 1e3 then return fmt(n / 1e3, "K") end
    return tostring(n)
end

-- ------------------------------------------------------------------ shapes

local core = require "apr.core"
local C, ffi = core.C, core.ffi
local dims_box = ffi.new("apr_arch_dims")
local tensor_box = ffi.new("apr_expected_tensor")

-- The tensors a file of architecture hp.arch must have, with their GGUF
-- shapes (ne0 first: a weight of [n_in, n_out] maps n_in inputs to n_out
-- outputs), from the runtime's one table of them (model/arch.c, which the
-- loader binds from). Returns a list of { name, shape, optional, role,
-- dtype_ok (function(dtype) -> bool), types (their names) }, or nil and
-- the reason there are no rules.
function M.expected_tensors(hp)
    if C.apr_arch_supported(type(hp.arch) == "string" and hp.arch or "") == 0 then
        return nil, string.format("no shape rules for architecture '%s'", tostring(hp.arch))
    end
    for _, k in ipairs({ "n_layer", "n_embd", "n_ff", "n_head", "n_vocab" }) do
        if not hp[k] then return nil, string.format("the metadata lacks %s", k) end
    end
    -- head_count 0 (or a key_length that is no size) leaves no head size:
    -- the loader refuses it, and shapes cannot follow from it
    if not (hp.head_dim and hp.head_dim > 0 and hp.n_kv_head and hp.n_kv_head > 0) then
        return nil, "no head size (head_count or key_length)"
    end
    if hp.head_dim % 1 ~= 0 then
        return nil, string.format("embedding_length %d is not a multiple of head_count %d", hp.n_embd, hp.n_head)
    end
    local function int(x) return math.max(math.min(x, 2 ^ 31 - 1), -2 ^ 31) end
    dims_box.n_layer, dims_box.n_embd, dims_box.n_ff = int(hp.n_layer), int(hp.n_embd), int(hp.n_ff)
    dims_box.n_head, dims_box.n_head_kv, dims_box.head_dim = int(hp.n_head), int(hp.n_kv_head), int(hp.head_dim)
    dims_box.n_vocab = int(hp.n_vocab)
    local n = tonumber(C.apr_arch_n_tensors(hp.arch, dims_box.n_layer))
    if n < 0 then return nil, string.format("block_count %s is no layer count", tostring(hp.n_layer)) end
    local list = {}
    for i = 0, n - 1 do
        core.check(C.apr_arch_tensor(hp.arch, dims_box, i, tensor_box))
        local t = tensor_box
        local role = tonumber(t.role)
        local shape = { tonumber(t.ne[0]) }
        if t.n_dims == 2 then shape[2] = tonumber(t.ne[1]) end
        list[#list + 1] = {
            ffi.string(t.name), shape, optional = t.required == 0, role = role, kind = ffi.string(t.kind),
            layer = tonumber(t.layer),
            dtype_ok = function(dtype) return C.apr_arch_type_allowed(role, dtype) ~= 0 end,
            types = ffi.string(C.apr_arch_types(role)),
        }
    end
    return list
end

local function shape_text(s) return "[" .. table.concat(s, ", ") .. "]" end
M.shape_text = shape_text

-- check_shapes(hp, tensors) -> problems (list of strings), extras (names
-- the architecture does not use), or nil and why there are no rules.
function M.check_shapes(hp, tensors)
    local expected, why = M.expected_tensors(hp)
    if not expected then return nil, why end
    local by_name = {}
    for _, t in ipairs(tensors) do by_name[t.name] = t end
    local problems, known = {}, {}
    if hp.n_head % hp.n_kv_head ~= 0 then
        problems[1] = string.format("head_count %d is not a multiple of head_count_kv %d", hp.n_head, hp.n_kv_head)
    end
    for _, x in ipairs(expected) do
        local name, want = x[1], x[2]
        known[name] = true
        local t = by_name[name]
        if not t then
            if not x.optional then problems[#problems + 1] = string.format("tensor '%s' is missing", name) end
        elseif shape_text(t.shape) ~= shape_text(want) then
            problems[#problems + 1] = string.format("tensor '%s' has shape %s, expected %s", name,
                shape_text(t.shape), shape_text(want))
        elseif not x.dtype_ok(t.dtype) then
            problems[#problems + 1] = string.format("tensor '%s' is %s, not one of %s", name, t.type, x.types)
        end
    end
    local extras = {}
    for _, t in ipairs(tensors) do
        if not known[t.name] then extras[#extras + 1] = t.name end
    end
    return problems, extras
end

return M
