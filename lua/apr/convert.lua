-- convert.lua — GGUF -> APR v2 and APR v2 -> GGUF (docs/apr-format.md).
--
--   local r = assert(convert.run("m.gguf", "m.apr", { compression = "lz4" }))
--   r.output_bytes, r.seconds, r.file_sha256, r.by_type
--   assert(convert.run("m.apr", "back.gguf"))   -- the original bytes
--   assert(convert.verify("m.apr"))             -- every chunk, and the SHA-256
--
-- The direction follows the input's format. The C jobs (runtime/formats/
-- apr_write.c, apr_export.c) do the work on every core; this module steps
-- them, so it can show progress and stop on Ctrl+C, after which nothing is
-- left under the output's name.
local core = require "apr.core"
local file = require "apr.file"
local checksum = require "apr.checksum"
local C, ffi = core.C, core.ffi

local M = {}

M.codecs = { "lz4", "zstd", "none" }
M.filters = { "auto", "byteplane", "none" }
local CODEC = { none = tonumber(C.APR_CODEC_NONE), lz4 = tonumber(C.APR_CODEC_LZ4), zstd = tonumber(C.APR_CODEC_ZSTD) }
local FILTER = { auto = tonumber(C.APR_FILTER_AUTO), none = tonumber(C.APR_FILTER_NONE),
                 byteplane = tonumber(C.APR_FILTER_BYTEPLANE) }

local writer_box = ffi.new("apr_aprf_writer *[1]")
local export_box = ffi.new("apr_aprf_export *[1]")
local progress = ffi.new("apr_aprf_progress")
local hex1, hex2 = ffi.new("char[65]"), ffi.new("char[65]")

local function now() return require("luv").hrtime() / 1e9 end

-- Refuses an output that is the input itself (same file through any name).
local function same_file(a, b)
    local uv = require "luv"
    local sa, sb = uv.fs_stat(a), uv.fs_stat(b)
    return sa and sb and sa.dev == sb.dev and sa.ino == sb.ino
end

-- Steps a job until every chunk is done; nil, "interrupted" on Ctrl+C.
local function drive(step, job, opts)
    progress.finished = 0
    while progress.finished == 0 do
        local s = step(job, progress)
        if s == C.APR_ERR_CANCELLED then return nil, "interrupted" end
        if s ~= 0 then return core.failure(s) end
        if opts.progress then opts.progress(tonumber(progress.done), tonumber(progress.total)) end
    end
    return true
end

-- Per tensor type and over all: bytes, stored bytes, tensors, and how many
-- were stored compressed; from an open APR file.
function M.ratios(f)
    local by, all = {}, { type = "all", tensors = 0, compressed = 0, bytes = 0, stored = 0 }
    for _, t in ipairs(f:tensors()) do
        local a = by[t.type]
        if not a then
            a = { type = t.type, tensors = 0, compressed = 0, bytes = 0, stored = 0 }
            by[t.type] = a
        end
        for _, x in ipairs({ a, all }) do
            x.tensors, x.bytes, x.stored = x.tensors + 1, x.bytes + t.bytes, x.stored + t.stored_bytes
            if t.codec ~= "none" then x.compressed = x.compressed + 1 end
        end
    end
    local list = {}
    for _, a in pairs(by) do list[#list + 1] = a end
    table.sort(list, function(x, y) return x.bytes > y.bytes or (x.bytes == y.bytes and x.type < y.type) end)
    for _, a in ipairs(list) do a.ratio = a.bytes > 0 and a.stored / a.bytes or 1 end
    all.ratio = all.bytes > 0 and all.stored / all.bytes or 1
    return list, all
end

local function write_apr(src, input, output, opts)
    local p = ffi.new("apr_aprf_write_params")
    C.apr_aprf_write_params_default(p)
    p.codec = CODEC[opts.compression or "lz4"]
    p.level = opts.level or 0
    p.filter = FILTER[opts.filter or "auto"]
    p.threads = opts.threads or 0
    p.chunk_bytes = opts.chunk_bytes or 0
    -- the source's digest from its sidecar when fresh, else hashed on the way
    local known = opts.source_sha256
    if not known and opts.sidecar ~= false then
        local hex, fresh = checksum.recorded(input)
        if hex and fresh then known = hex end
    end
    p.source_sha256 = known
    local g = C.apr_source_gguf(src:handle(), 0)
    if g == nil or #src.files ~= 1 then
        return nil, string.format("%s: APR converts one GGUF file; this is a split model of %d files", input, #src.files)
    end
    local t0 = now()
    local s = C.apr_aprf_writer_new(g, output, p, writer_box)
    if s ~= 0 then return core.failure(s) end
    local w = ffi.gc(writer_box[0], C.apr_aprf_writer_free)
    local ok, why = drive(C.apr_aprf_writer_step, w, opts)
    if ok then
        s = C.apr_aprf_writer_finish(w)
        if s ~= 0 then ok, why = core.failure(s) end
    end
    if not ok then
        ffi.gc(w, nil)
        C.apr_aprf_writer_free(w)  -- removes the temporary file now
        return nil, why
    end
    local seconds = now() - t0
    C.apr_aprf_writer_digests(w, hex1, hex2)
    local out_bytes = tonumber(C.apr_aprf_writer_file_size(w))
    ffi.gc(w, nil)
    C.apr_aprf_writer_free(w)
    local source_sha = ffi.string(hex2)
    if not known and opts.sidecar ~= false then checksum.store(input, source_sha) end
    local apr_file = assert(file.open(output))
    local by_type, all = M.ratios(apr_file)
    apr_file:close()
    return {
        direction = "gguf->apr", input = input, output = output, format = "APR v2",
        compression = opts.compression or "lz4", filter = opts.filter or "auto",
        level = opts.level or ({ lz4 = 1, zstd = 3 })[opts.compression or "lz4"],
        input_bytes = src.size, output_bytes = out_bytes, seconds = seconds,
        file_sha256 = ffi.string(hex1), source_sha256 = source_sha,
        tensors = all.tensors, compressed_tensors = all.compressed, tensor_bytes = all.bytes,
        stored_bytes = all.stored, by_type = by_type,
    }
end

local function write_gguf(f, input, output, opts)
    local t0 = now()
    local s = C.apr_aprf_export_new(C.apr_source_aprf(f:handle()), output, opts.threads or 0, export_box)
    if s ~= 0 then return core.failure(s) end
    local x = ffi.gc(export_box[0], C.apr_aprf_export_free)
    local ok, why = drive(C.apr_aprf_export_step, x, opts)
    if ok then
        s = C.apr_aprf_export_finish(x)
        if s ~= 0 then ok, why = core.failure(s) end
    end
    if ok then C.apr_aprf_export_sha256(x, hex1) end
    ffi.gc(x, nil)
    C.apr_aprf_export_free(x)
    if not ok then return nil, why end
    local sha = ffi.string(hex1)
    -- the digest was computed while writing: the sidecar saves hashing again
    if opts.sidecar ~= false then checksum.store(output, sha) end
    return {
        direction = "apr->gguf", input = input, output = output, format = "GGUF v" .. f.gguf_version,
        input_bytes = f.size, output_bytes = f.gguf_size, seconds = now() - t0, sha256 = sha,
        matches_source = f.source_sha256 == sha, source_sha256 = f.source_sha256,
    }
end

-- Every job closes its input before returning, whatever the
-- outcome: a mapped file left to the garbage collector keeps its blocks on
-- the disk after it is removed (a 20 GB model removed to make room, as
-- bench/apr_convert.lua --back-over-source does, would free nothing).
local function with_input(fn, input, ...)
    local f, err = file.open(input)
    if not f then return nil, err end
    local ok, r, why = pcall(fn, f, input, ...)
    f:close()
    if not ok then error(r, 0) end
    return r, why
end

-- run(input, output [, opts]) -> result, or nil and a message ("interrupted"
-- after Ctrl+C). opts: compression ("lz4", "zstd", "none"), level, filter
-- ("auto", "byteplane", "none"), threads, chunk_bytes, progress(done, total)
-- called between windows, source_sha256 (64 hex digits if known), sidecar
-- (false: neither read nor write SHA-256 sidecars).
function M.run(input, output, opts)
    opts = opts or {}
    if type(input) ~= "string" or type(output) ~= "string" then error("convert.run: paths must be strings", 2) end
    if opts.compression and not CODEC[opts.compression] then error("unknown compression " .. opts.compression, 2) end
    if opts.filter and not FILTER[opts.filter] then error("unknown filter " .. opts.filter, 2) end
    local kind = file.sniff(input)
    if not kind then
        local _, err = file.open(input)  -- the reader's own message for what it is
        return nil, err or (input .. ": neither a GGUF nor an APR file")
    end
    if same_file(input, output) then return nil, output .. ": is the input file itself" end
    return with_input(kind == "GGUF" and write_apr or write_gguf, input, output, opts)
end

-- verify(path [, opts]) -> { chunks, tensors, sha256 }, or nil and the
-- message of the first failure: every chunk of every tensor decodes to its
-- checksum, and the file's bytes before the trailer hash to the SHA-256 it
-- records. opts.progress(done, total) as for run.
local function check_apr(f, path, opts)
    if f.format ~= "APR" then return nil, path .. ": not an APR file" end
    local tensors = f:tensors()
    local total, done = 0, 0
    for _, t in ipairs(tensors) do total = total + t.bytes end
    for i, t in ipairs(tensors) do
        if C.apr_interrupted() ~= 0 then return nil, "interrupted" end
        local ok, why = f:check_tensor(i - 1, opts.threads)
        if not ok then return nil, why end
        done = done + t.bytes
        if opts.progress then opts.progress(done, total) end
    end
    local sha, why = checksum.compute(f, 1, f.hashed_size)
    if not sha then return nil, why end
    if sha ~= f.file_sha256 then
        return nil, string.format("%s: SHA-256 of the file before its trailer is %s, but it records %s", path, sha,
            f.file_sha256)
    end
    return { chunks = f.n_chunks, tensors = #tensors, sha256 = sha }
end

function M.verify(path, opts)
    return with_input(check_apr, path, opts or {})
end

return M
