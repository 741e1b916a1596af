-- apr info FILE: what a model file is (name, format, quantization, size,
-- parameters, context, architecture, SHA256).
local cli = require "apr.cli"
local mi = require "apr.model_info"

local M = {}

M.spec = {
    usage = "apr info FILE [--json] [--format] [--no-hash]",
    summary = "Show a model file's name, format, quantization, size, parameters and SHA256.",
    description = "The SHA256 of a large file takes a while the first time (progress is shown on\n" ..
                  "a terminal; Ctrl+C stops it); it is then cached in FILE.sha256, or under\n" ..
                  "$XDG_CACHE_HOME/apr/sha256 when the file's folder is read-only.",
    options = {
        { "json", help = "print one JSON object" },
        { "format", help = "print only the format and version (e.g. GGUF v3): checks the header" },
        { "no-hash", help = "skip the SHA256" },
    },
    positional = { min = 1, max = 1, name = "FILE" },
    examples = {
        "apr info models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "apr info --format tests/fixtures/models/tiny-q8_0.gguf",
    },
}

-- The facts, in the order they are printed.
local function gather(f, hash)
    local tensors = f:tensors()
    local hp = mi.hparams(f, tensors)
    local params = mi.param_count(tensors)
    local info = {
        path = f.path,
        model = type(hp.name) == "string" and hp.name
            or (f.path:match("([^/]+)$"):gsub("%-%d%d%d%d%d%-of%-%d%d%d%d%d%.gguf$", ""):gsub("%.gguf$", "")
                :gsub("%.apr$", "")),
        format = f.format .. " v" .. f.version,
        files = #f.files,
        quantization = mi.quantization(f, tensors),
        size = f.size,
        parameters = params,
        context_length = hp.n_ctx,
        architecture = hp.arch,
        layers = hp.n_layer,
        embedding_length = hp.n_embd,
        heads = hp.n_head,
        kv_heads = hp.n_kv_head,
        vocab = hp.n_vocab,
        tensors = #tensors,
    }
    if f.gguf_version then
        -- what APR adds: codecs, the bytes they saved, the source
        local _, all = require("apr.convert").ratios(f)
        local codecs = {}
        for _, t in ipairs(tensors) do codecs[t.codec] = (codecs[t.codec] or 0) + 1 end
        local list = {}
        for c, n in pairs(codecs) do list[#list + 1] = string.format("%s (%d tensors)", c, n) end
        table.sort(list)
        info.compression = table.concat(list, ", ")
        info.tensor_bytes, info.stored_bytes, info.ratio = all.bytes, all.stored, all.ratio
        info.chunks = f.n_chunks
        info.source_format = "GGUF v" .. f.gguf_version
        info.source_size = f.gguf_size
        info.source_sha256 = f.source_sha256
    end
    if hash then
        local hex, err = f:sha256()
        if not hex then cli.fail("%s: SHA256 %s", f.path, err) end
        info.sha256 = hex
    end
    return info
end

function M.run(opts)
    local f = mi.open(opts[1])
    if opts.format then
        io.stdout:write(f.format, " v", f.version, "\n")
        return 0
    end
    local info = gather(f, not opts.no_hash)
    if opts.json then
        io.stdout:write(require("cjson").encode(info), "\n")
        return 0
    end
    local lines = {
        "Model: " .. info.model,
        "Format: " .. info.format,
        "Quantization: " .. info.quantization,
        "Size: " .. mi.format_size(info.size),
        "Parameters: " .. mi.format_count(info.parameters),
    }
    local function add(label, v, unit)
        if v ~= nil then lines[#lines + 1] = label .. ": " .. tostring(v) .. (unit or "") end
    end
    add("Context", info.context_length, " tokens")
    add("Architecture", info.architecture and mi.arch_name(info.architecture))
    add("Layers", info.layers)
    add("Embedding", info.embedding_length)
    add("Heads", info.heads)
    add("KV heads", info.kv_heads)
    add("Vocabulary", info.vocab, " tokens")
    if info.compression then
        add("Compression", info.compression)
        add("Tensor data", string.format("%s stored for %s (%.1f%%), %d chunks", mi.format_size(info.stored_bytes),
            mi.format_size(info.tensor_bytes), 100 * info.ratio, info.chunks))
        add("Source", string.format("%s, %s", info.source_format, mi.format_size(info.source_size)))
        add("Source SHA256", info.source_sha256)
    end
    if #f.files > 1 then
        add("Files", string.format("%d (a split model)", #f.files))
        -- one digest per part, as each part is published and checked
        for k, hex in ipairs(info.sha256 or {}) do add("SHA256", hex .. "  " .. f.files[k].path:match("[^/]*$")) end
    else
        add("SHA256", info.sha256)
    end
    io.stdout:write(table.concat(lines, "\n"), "\n")
    return 0
end

return M
