-- synth.lua — synthetic models: a real architecture's tensors (names,
-- shapes, element types, metadata, vocabulary) filled with random weights
-- of mean 0 and standard deviation 1/sqrt(fan-in), for measuring speed on
-- the real byte layout without the real weights (`apr synth`).
--
--   local synth = require "apr.synth"
--   local plan = synth.plan("tiny", "q4_k_m")           -- tensors + metadata
--   assert(synth.write("/tmp/tiny.gguf", plan, { seed = 1 }))
local core = require "apr.core"
local hrtime = require("luv").hrtime
local C, ffi = core.C, core.ffi

local M = {}

-- ------------------------------------------------------------------ presets

-- Hyperparameters from each model's config.json (Qwen2.5-Coder family);
-- `tiny` and `gqa5` are small test models (gqa5: the 32B's head geometry).
M.presets = {
    ["qwen2.5-coder-32b"] = { n_layer = 64, n_embd = 5120, n_ff = 27648, n_head = 40, n_head_kv = 8,
                              n_vocab = 152064, ctx = 32768, rope_base = 1e6, eps = 1e-6 },
    ["qwen2.5-coder-7b"] = { n_layer = 28, n_embd = 3584, n_ff = 18944, n_head = 28, n_head_kv = 4,
                             n_vocab = 152064, ctx = 32768, rope_base = 1e6, eps = 1e-6 },
    ["qwen2.5-coder-0.5b"] = { n_layer = 24, n_embd = 896, n_ff = 4864, n_head = 14, n_head_kv = 2,
                               n_vocab = 151936, ctx = 32768, rope_base = 1e6, eps = 1e-6, tied = true },
    ["tiny"] = { n_layer = 2, n_embd = 256, n_ff = 512, n_head = 4, n_head_kv = 2,
                 n_vocab = 2048, ctx = 4096, rope_base = 1e6, eps = 1e-6 },
    ["gqa5"] = { n_layer = 2, n_embd = 1280, n_ff = 1536, n_head = 10, n_head_kv = 2,
                 n_vocab = 2048, ctx = 8192, rope_base = 1e6, eps = 1e-6 },
}
M.preset_names = { "qwen2.5-coder-32b", "qwen2.5-coder-7b", "qwen2.5-coder-0.5b", "tiny", "gqa5" }
M.layouts = { "q4_k_m", "q8_0", "f16" }

local F32, F16 = tonumber(C.APR_F32), tonumber(C.APR_F16)
local Q4_K, Q6_K, Q8_0, Q5_0 = tonumber(C.APR_Q4_K), tonumber(C.APR_Q6_K), tonumber(C.APR_Q8_0), tonumber(C.APR_Q5_0)

-- general.file_type (llama_ftype) of each layout.
local FILE_TYPE = { q4_k_m = 15, q8_0 = 7, f16 = 1 }

-- ------------------------------------------------------------------ tensor types

-- llama.cpp's use_more_bits (llama-quant.cpp): the first and last eighth of
-- the layers, and every third layer in between, get more bits in Q4_K_M.
local function use_more_bits(i, n)
    local eighth = math.floor(n / 8)
    return i < eighth or i >= math.floor(7 * n / 8) or (i - eighth) % 3 == 2
end
M.use_more_bits = use_more_bits

-- The Q4_K_M type of a weight. Rows that are not whole 256-element blocks
-- (the 0.5B's 896) cannot be K-quants; llama.cpp then falls back to Q5_0 for
-- Q4_K and Q8_0 for Q6_K, and so do we.
local function q4_k_m_type(kind, layer, n_layer, ne0)
    local t = Q4_K
    if kind == "output" then
        t = Q6_K
    elseif (kind == "attn_v" or kind == "ffn_down") and use_more_bits(layer, n_layer) then
        t = Q6_K
    end
    if ne0 % 256 ~= 0 then t = (t == Q6_K) and Q8_0 or Q5_0 end
    return t
end

local dims_box = ffi.new("apr_arch_dims")
local tensor_box = ffi.new("apr_expected_tensor")
local ROLE = { embedding = tonumber(C.APR_ROLE_EMBEDDING), norm = tonumber(C.APR_ROLE_NORM),
               bias = tonumber(C.APR_ROLE_BIAS), output = tonumber(C.APR_ROLE_OUTPUT) }

-- plan_tensors(p, layout) -> list of { name, shape (ne0 first), dtype, mean,
-- std } in file order: the Qwen2 architecture's tensors as the runtime's
-- one table of them lists them (apr.h "Architectures", model/arch.c).
-- Weights: mean 0, std 1/sqrt(fan-in) (fan-in = ne0, the length of the rows
-- a matrix-vector product dots with the input); RMS-norm gains 1 +- 0.1;
-- biases 0 +- 0.02.
local function plan_tensors(p, layout)
    dims_box.n_layer, dims_box.n_embd, dims_box.n_ff = p.n_layer, p.n_embd, p.n_ff
    dims_box.n_head, dims_box.n_head_kv, dims_box.head_dim = p.n_head, p.n_head_kv, p.n_embd / p.n_head
    dims_box.n_vocab = p.n_vocab
    local out = {}
    for i = 0, tonumber(C.apr_arch_n_tensors("qwen2", p.n_layer)) - 1 do
        core.check(C.apr_arch_tensor("qwen2", dims_box, i, tensor_box))
        local t, role = tensor_box, tonumber(tensor_box.role)
        local name, ne0, ne1 = ffi.string(t.name), tonumber(t.ne[0]), tonumber(t.ne[1])
        if role == ROLE.norm or role == ROLE.bias then
            local norm = role == ROLE.norm
            out[#out + 1] = { name = name, shape = { ne0 }, dtype = F32, mean = norm and 1 or 0,
                              std = norm and 0.1 or 0.02 }
        elseif not (role == ROLE.output and p.tied) then  -- tied: token_embd is the output
            -- With tied embeddings the token embedding doubles as the output
            -- matrix, and llama.cpp quantizes it as it would the output.
            local kind = ffi.string(t.kind)
            if role == ROLE.embedding then kind = p.tied and "output" or "other" end
            local dtype
            if layout == "q4_k_m" then
                dtype = q4_k_m_type(kind, tonumber(t.layer), p.n_layer, ne0)
            else
                dtype = layout == "q8_0" and Q8_0 or F16
            end
            out[#out + 1] = { name = name, shape = { ne0, ne1 }, dtype = dtype, mean = 0, std = 1 / math.sqrt(ne0) }
        end
    end
    return out
end

-- ------------------------------------------------------------------ vocabulary

-- GPT-2's byte-to-unicode table: the printable bytes stand for themselves,
-- the others for code points from 256 up, so every byte-level BPE vocabulary
-- starts with these 256 tokens.
-- UTF-8 of a code point below 0x800 (all the table needs).
local function utf8_char(cp)
    if cp < 0x80 then return string.char(cp) end
    return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
end

local function byte_tokens()
    local printable = {}
    local function range(a, b) for c = a, b do printable[c] = true end end
    range(33, 126)
    range(161, 172)
    range(174, 255)
    local out, extra = {}, 0
    for b = 0, 255 do
        local cp = b
        if not printable[b] then
            cp = 256 + extra
            extra = extra + 1
        end
        out[b + 1] = utf8_char(cp)
    end
    return out
end

local SPECIALS = { "<|endoftext|>", "<|im_start|>", "<|im_end|>" }
local NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5

-- A byte-level vocabulary of n tokens: the 256 bytes, padding, and the three
-- ChatML specials as the last ids. No merges: text tokenizes to bytes.
local function byte_vocab(n)
    local toks, types = byte_tokens(), {}
    for i = 1, 256 do types[i] = NORMAL end
    for i = 257, n - #SPECIALS do
        toks[i], types[i] = string.format("[PAD%d]", i - 1), UNUSED
    end
    for k, s in ipairs(SPECIALS) do
        toks[n - #SPECIALS + k], types[n - #SPECIALS + k] = s, CONTROL
    end
    return toks, types, {}
end

local function read_json(path)
    local bytes, len = ffi.new("char *[1]"), ffi.new("uint64_t[1]")
    local st = C.apr_file_read(path, bytes, len)
    if st ~= 0 then return core.failure(st) end
    local text = ffi.string(bytes[0], len[0])
    C.apr_free(bytes[0])
    local ok, doc = pcall(require("cjson").decode, text)
    if not ok then return nil, string.format("%s: not valid JSON (%s)", path, tostring(doc)) end
    return doc
end

-- The vocabulary of a Hugging Face tokenizer.json (BPE), fitted to n ids:
-- a larger embedding is padded with [PADi] tokens (as llama.cpp's converter
-- does); a smaller one keeps the first n-3 tokens in merge-rank order, the
-- merges among them and the ChatML specials, a consistent smaller BPE.
local function json_vocab(n, path)
    local doc, err = read_json(path)
    if not doc then return nil, err end
    local model = type(doc) == "table" and doc.model
    if type(model) ~= "table" or type(model.vocab) ~= "table" or type(model.merges) ~= "table" then
        return nil, path .. ": no model.vocab and model.merges (not a BPE tokenizer.json)"
    end
    local merges = {}
    for i, m in ipairs(model.merges) do
        merges[i] = type(m) == "table" and (tostring(m[1]) .. " " .. tostring(m[2])) or tostring(m)
    end
    local by_id, count = {}, 0
    for tok, id in pairs(model.vocab) do
        if type(id) ~= "number" or id < 0 or id ~= math.floor(id) or by_id[id] then
            return nil, string.format("%s: bad id %s for token %q", path, tostring(id), tok)
        end
        by_id[id] = tok
        count = count + 1
    end
    local toks, types = {}, {}
    if n < count + #SPECIALS then
        local keep = n - #SPECIALS
        local kept = {}
        for id = 0, keep - 1 do
            local tok = by_id[id]
            if not tok then return nil, string.format("%s: token id %d is missing", path, id) end
            toks[id + 1], types[id + 1] = tok, NORMAL
            kept[tok] = true
        end
        local fitted = {}
        for _, m in ipairs(merges) do
            local a, b = m:match("^(.-) (.*)$")
            if a and kept[a] and kept[b] and kept[a .. b] then fitted[#fitted + 1] = m end
        end
        for k, s in ipairs(SPECIALS) do toks[keep + k], types[keep + k] = s, CONTROL end
        return toks, types, fitted
    end
    for id, tok in pairs(by_id) do
        if id < n then toks[id + 1], types[id + 1] = tok, NORMAL end
    end
    for _, a in ipairs(type(doc.added_tokens) == "table" and doc.added_tokens or {}) do
        if type(a.id) == "number" and a.id >= 0 and a.id < n and type(a.content) == "string" then
            toks[a.id + 1], types[a.id + 1] = a.content, a.special and CONTROL or USER_DEFINED
        end
    end
    for id = 0, n - 1 do
        if not toks[id + 1] then toks[id + 1], types[id + 1] = string.format("[PAD%d]", id), UNUSED end
    end
    return toks, types, merges
end

-- ------------------------------------------------------------------ the plan

local CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']" ..
               " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}" ..
               "{% endif %}"

local function index_of(list, s)
    for i, v in ipairs(list) do if v == s then return i - 1 end end
end

-- plan(preset, layout [, vocab_path [, n_layer]]) -> { tensors = ..., metadata =
-- list of { key, type, value [, elem_type] } } or nil and a message. n_layer
-- replaces the preset's layer count (the same geometry, shallower).
function M.plan(preset, layout, vocab_path, n_layer)
    local p = M.presets[preset]
    if not p then return nil, "unknown preset '" .. tostring(preset) .. "'" end
    if n_layer and (n_layer ~= math.floor(n_layer) or n_layer < 1 or n_layer > 1024) then
        return nil, "layer count must be 1..1024, got " .. tostring(n_layer)
    end
    if n_layer and n_layer ~= p.n_layer then
        local q = {}
        for k, v in pairs(p) do q[k] = v end
        q.n_layer, p = n_layer, q
    end
    if not FILE_TYPE[layout] then return nil, "unknown layout '" .. tostring(layout) .. "'" end
    local toks, types, merges
    if vocab_path then
        toks, types, merges = json_vocab(p.n_vocab, vocab_path)
        if not toks then return nil, types end
    else
        toks, types, merges = byte_vocab(p.n_vocab)
    end
    local eos = index_of(toks, "<|im_end|>") or p.n_vocab - 1
    local eot = index_of(toks, "<|endoftext|>") or p.n_vocab - 3
    local md = {
        { "general.architecture", "string", "qwen2" },
        { "general.name", "string", string.format("synthetic-%s-%s%s", preset, layout,
            p == M.presets[preset] and "" or string.format("-%dl", p.n_layer)) },
        { "general.file_type", "uint32", FILE_TYPE[layout] },
        { "general.quantization_version", "uint32", 2 },
        { "qwen2.block_count", "uint32", p.n_layer },
        { "qwen2.context_length", "uint32", p.ctx },
        { "qwen2.embedding_length", "uint32", p.n_embd },
        { "qwen2.feed_forward_length", "uint32", p.n_ff },
        { "qwen2.attention.head_count", "uint32", p.n_head },
        { "qwen2.attention.head_count_kv", "uint32", p.n_head_kv },
        { "qwen2.rope.freq_base", "float32", p.rope_base },
        { "qwen2.attention.layer_norm_rms_epsilon", "float32", p.eps },
        { "tokenizer.ggml.model", "string", "gpt2" },
        { "tokenizer.ggml.pre", "string", "qwen2" },
        { "tokenizer.ggml.tokens", "strings", toks },
        { "tokenizer.ggml.token_type", "int32s", types },
        { "tokenizer.ggml.merges", "strings", merges },
        { "tokenizer.ggml.eos_token_id", "uint32", eos },
        { "tokenizer.ggml.padding_token_id", "uint32", eot },
        { "tokenizer.ggml.bos_token_id", "uint32", eot },
        { "tokenizer.ggml.add_bos_token", "bool", false },
        { "tokenizer.chat_template", "string", CHATML },
    }
    return { preset = preset, layout = layout, hparams = p, tensors = plan_tensors(p, layout), metadata = md }
end

-- ------------------------------------------------------------------ writing

local G = {
    uint32 = tonumber(C.APR_GGUF_UINT32), int32 = tonumber(C.APR_GGUF_INT32),
    float32 = tonumber(C.APR_GGUF_FLOAT32), bool = tonumber(C.APR_GGUF_BOOL),
}

local function add_metadata(w, key, kind, value)
    if kind == "string" then
        return C.apr_gguf_writer_add_str(w, key, value, #value)
    elseif kind == "uint32" or kind == "bool" then
        return C.apr_gguf_writer_add_int(w, key, G[kind], kind == "bool" and (value and 1 or 0) or value)
    elseif kind == "float32" then
        return C.apr_gguf_writer_add_float(w, key, G.float32, value)
    elseif kind == "int32s" then
        local arr = ffi.new("int32_t[?]", math.max(#value, 1), value)
        return C.apr_gguf_writer_add_array(w, key, G.int32, arr, #value)
    elseif kind == "strings" then
        -- The Lua strings stay referenced by `value` while C reads them.
        local n = #value
        local ptrs, lens = ffi.new("const char *[?]", math.max(n, 1)), ffi.new("uint64_t[?]", math.max(n, 1))
        for i = 1, n do ptrs[i - 1], lens[i - 1] = value[i], #value[i] end
        return C.apr_gguf_writer_add_str_array(w, key, ptrs, lens, n)
    end
    error("unknown metadata kind " .. tostring(kind))
end

local writer_box = ffi.new("apr_gguf_writer *[1]")

-- write(path, plan, opts) -> { tensors, bytes, seconds } or nil and a message.
-- opts.seed (default 0); opts.progress(done_bytes, total_bytes) after each
-- tensor. The file is written to path .. ".tmp" and renamed when complete;
-- on any failure or Ctrl+C nothing is left behind.
function M.write(path, plan, opts)
    opts = opts or {}
    local replaceable, rerr = require("apr.fs.replace").check(path)
    if not replaceable then return nil, rerr end
    local seed = opts.seed or 0
    local st = C.apr_gguf_writer_new(writer_box)
    if st ~= 0 then return core.failure(st) end
    local w = ffi.gc(writer_box[0], C.apr_gguf_writer_free)
    local function close(...)
        ffi.gc(w, nil)
        C.apr_gguf_writer_free(w)   -- removes an unfinished file
        return ...
    end
    for _, m in ipairs(plan.metadata) do
        st = add_metadata(w, m[1], m[2], m[3])
        if st ~= 0 then return close(core.failure(st)) end
    end
    local ne = ffi.new("int64_t[4]")
    for _, t in ipairs(plan.tensors) do
        for d = 1, #t.shape do ne[d - 1] = t.shape[d] end
        st = C.apr_gguf_writer_add_tensor(w, t.name, t.dtype, #t.shape, ne)
        if st ~= 0 then return close(core.failure(st)) end
    end
    local tmp = path .. ".tmp"
    st = C.apr_gguf_writer_begin(w, tmp)
    if st ~= 0 then return close(core.failure(st)) end
    local total = tonumber(C.apr_gguf_writer_file_size(w))
    local done = tonumber(C.apr_gguf_writer_data_offset(w))
    local t0 = hrtime()
    for i, t in ipairs(plan.tensors) do
        local numel = 1
        for _, d in ipairs(t.shape) do numel = numel * d end
        st = C.apr_synth_fill(w, i - 1, t.dtype, numel, t.mean, t.std, seed)
        if st ~= 0 then
            local _, msg = core.failure(st)
            return close(nil, msg)
        end
        done = done + tonumber(C.apr_gguf_writer_tensor_nbytes(w, i - 1))
        if opts.progress then opts.progress(done, total) end
    end
    st = C.apr_gguf_writer_finish(w)
    if st ~= 0 then return close(core.failure(st)) end
    close()
    local ok, err = os.rename(tmp, path)
    if not ok then
        os.remove(tmp)
        return nil, err
    end
    return { tensors = #plan.tensors, bytes = total, seconds = (hrtime() - t0) * 1e-9 }
end

return M
