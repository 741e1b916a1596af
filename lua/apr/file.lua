-- file.lua — apr.open: a model file, its metadata and its tensors.
--
--   local f = assert(apr.open("model.gguf"))
--   f.format, f.version          --> "GGUF", 3
--   f.metadata["general.name"]   --> "Qwen2.5-Coder-32B-Instruct"
--   for _, t in ipairs(f:tensors()) do print(t.name, t.type, t.bytes) end
--   local w = f:tensor("blk.0.attn_q.weight")   -- an apr.tensor view
--
-- Files are read through the runtime's model-source interface (apr.h,
-- "Model sources"): GGUF, a split GGUF model opened from its first part,
-- and APR v2 (docs/apr-format.md), whose file object adds what only APR
-- has: gguf_version and gguf_size (the GGUF it converts back to), n_chunks,
-- file_sha256 (recorded for its bytes before the trailer), source_sha256,
-- per tensor its filter, chunk count and size, and f:check_tensor(i). The file was validated when opened
-- (docs/gguf.md), so nothing read from it here can point outside it. Tensor
-- views keep the file open; the file goes away when the file object and
-- every view of it are garbage, or at f:close().
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

local File = {}
File.__index = function(self, k)
    if k == "metadata" then
        local md = self:_metadata()
        rawset(self, "metadata", md)
        return md
    end
    return File[k]
end

local source_box = ffi.new("apr_source *[1]")
local key_box = ffi.new("const char *[1]")
local value = ffi.new("apr_gguf_value")
local info = ffi.new("apr_tensor_info")
local data_box = ffi.new("const void *[1]")

local T = {
    UINT8 = tonumber(C.APR_GGUF_UINT8), INT8 = tonumber(C.APR_GGUF_INT8),
    UINT16 = tonumber(C.APR_GGUF_UINT16), INT16 = tonumber(C.APR_GGUF_INT16),
    UINT32 = tonumber(C.APR_GGUF_UINT32), INT32 = tonumber(C.APR_GGUF_INT32),
    FLOAT32 = tonumber(C.APR_GGUF_FLOAT32), BOOL = tonumber(C.APR_GGUF_BOOL),
    STRING = tonumber(C.APR_GGUF_STRING), ARRAY = tonumber(C.APR_GGUF_ARRAY),
    UINT64 = tonumber(C.APR_GGUF_UINT64), INT64 = tonumber(C.APR_GGUF_INT64),
    FLOAT64 = tonumber(C.APR_GGUF_FLOAT64),
}
local TYPE_NAME = {}
for name, n in pairs(T) do TYPE_NAME[n] = name:lower() end
M.value_types = T

-- C pointer types to read a scalar of each fixed-size type.
local PTR = {
    [T.UINT8] = ffi.typeof("const uint8_t *"), [T.INT8] = ffi.typeof("const int8_t *"),
    [T.UINT16] = ffi.typeof("const uint16_t *"), [T.INT16] = ffi.typeof("const int16_t *"),
    [T.UINT32] = ffi.typeof("const uint32_t *"), [T.INT32] = ffi.typeof("const int32_t *"),
    [T.FLOAT32] = ffi.typeof("const float *"), [T.BOOL] = ffi.typeof("const uint8_t *"),
    [T.UINT64] = ffi.typeof("const uint64_t *"), [T.INT64] = ffi.typeof("const int64_t *"),
    [T.FLOAT64] = ffi.typeof("const double *"),
}

local TWO53 = 2 ^ 53

-- A 64-bit integer as a Lua number when the number is exact, else as the
-- int64/uint64 cdata itself (docs/lua-api.md: metadata values).
local function int64_value(x)
    local n = tonumber(x)
    if n >= -TWO53 and n <= TWO53 then return n end
    return x
end

-- The scalar of type t at p[i].
local function scalar(t, p, i)
    local x = ffi.cast(PTR[t], p)[i]
    if t == T.BOOL then return x ~= 0 end
    if t == T.UINT64 or t == T.INT64 then return int64_value(x) end
    return tonumber(x)
end

-- Converts a value (an apr_gguf_value, copied) to Lua.
local function to_lua(h, v)
    local t = tonumber(v.type)
    if t == T.STRING then return ffi.string(v.data, v.len) end
    if t ~= T.ARRAY then return scalar(t, v.data, 0) end
    local et, n, out = tonumber(v.elem_type), tonumber(v.len), {}
    if PTR[et] then
        local p = ffi.cast(PTR[et], v.data)
        if et == T.BOOL then
            for i = 1, n do out[i] = p[i - 1] ~= 0 end
        elseif et == T.UINT64 or et == T.INT64 then
            for i = 1, n do out[i] = int64_value(p[i - 1]) end
        else
            for i = 1, n do out[i] = tonumber(p[i - 1]) end
        end
        return out
    end
    local elem = ffi.new("apr_gguf_value")
    for i = 1, n do
        core.check(C.apr_source_array_get(h, v, i - 1, elem))
        if et == T.STRING then
            out[i] = ffi.string(elem.data, elem.len)
        else
            out[i] = to_lua(h, ffi.new("apr_gguf_value", elem))
        end
    end
    return out
end

-- ------------------------------------------------------------------ open

local source_info = ffi.new("apr_source_info")
local path_box, bytes_box, size_box = ffi.new("const char *[1]"), ffi.new("const void *[1]"), ffi.new("uint64_t[1]")

-- The container a file's first bytes name: "APR", "GGUF", or nil.
function M.sniff(path)
    local fh = io.open(path, "rb")
    local magic = fh and fh:read(4)
    if fh then fh:close() end
    if magic == "APRM" then return "APR" elseif magic == "GGUF" then return "GGUF" end
    return nil
end

-- apr.open(path) -> file, or nil and a message naming the problem.
function M.open(path)
    if type(path) ~= "string" then error("apr.open: path must be a string", 2) end
    local s = C.apr_source_open(path, source_box)
    if s ~= 0 then return core.failure(s) end
    local h = ffi.gc(source_box[0], C.apr_source_close)
    C.apr_source_get_info(h, source_info)
    local files = {}
    for k = 0, source_info.n_files - 1 do
        core.check(C.apr_source_file(h, k, path_box, bytes_box, size_box))
        files[k + 1] = { path = ffi.string(path_box[0]), size = tonumber(size_box[0]) }
    end
    local self = setmetatable({
        path = path,
        format = ffi.string(source_info.format),
        version = tonumber(source_info.version),
        size = tonumber(source_info.size),
        files = files,
        alignment = tonumber(source_info.alignment),
        data_offset = tonumber(source_info.data_offset),
        _h = h,
        _views = setmetatable({}, { __mode = "k" }),
    }, File)
    local a = C.apr_source_aprf(h)
    if a ~= nil then
        local meta = C.apr_aprf_metadata(a)
        self.gguf_version = tonumber(C.apr_gguf_version(meta))
        self.gguf_size = tonumber(C.apr_aprf_gguf_size(a))
        self.n_chunks = tonumber(C.apr_aprf_n_chunks(a))
        self.hashed_size = tonumber(C.apr_aprf_hashed_size(a))
        local hex = ffi.new("char[65]")
        C.apr_aprf_file_sha256(a, hex)
        self.file_sha256 = ffi.string(hex)
        if C.apr_aprf_source_sha256(a, hex) ~= 0 then self.source_sha256 = ffi.string(hex) end
    end
    return self
end

local aprf_info = ffi.new("apr_aprf_tensor_info")

local function handle(self)
    local h = rawget(self, "_h")
    if not h then error(self.path .. ": the file was closed", 3) end
    return h
end

-- The handle (apr_source *) for code that calls the C API directly; valid
-- while the file object lives.
function File:handle() return handle(self) end

-- Keys in file order.
function File:keys()
    local h, out = handle(self), {}
    for i = 0, tonumber(C.apr_source_n_kv(h)) - 1 do
        core.check(C.apr_source_kv(h, i, key_box, value))
        out[#out + 1] = ffi.string(key_box[0])
    end
    return out
end

-- The value of one key (nil if absent) and its type: "uint32", "string",
-- "array[string]", "array[array]", ...
function File:get(key)
    local h = handle(self)
    local i = C.apr_source_find_kv(h, key)
    if i < 0 then return nil end
    core.check(C.apr_source_kv(h, i, key_box, value))
    local v = ffi.new("apr_gguf_value", value)
    local tname = TYPE_NAME[tonumber(v.type)]
    if tname == "array" then tname = "array[" .. TYPE_NAME[tonumber(v.elem_type)] .. "]" end
    return to_lua(h, v), tname
end

function File:_metadata()
    local md = {}
    for _, k in ipairs(self:keys()) do md[k] = self:get(k) end
    return md
end

-- ------------------------------------------------------------------ tensors

local function shape_of(t)
    local shape = {}
    for d = 0, t.n_dims - 1 do shape[d + 1] = tonumber(t.ne[d]) end
    return shape
end

local function dtype_name(dtype)
    local n = C.apr_dtype_name(dtype)
    return n ~= nil and ffi.string(n) or tostring(dtype)
end

-- The tensor table in file order (a split model: its parts in order): {
-- name, type ("Q4_K"), dtype (number), shape (GGUF order, ne0 first),
-- elements, bytes, offset (from its file's data section), file_offset (from
-- its file's start), file (1-based: which file of a split model holds it),
-- stored_bytes and codec (how it is stored: "none" for as is) }.
function File:tensors()
    local h, out = handle(self), {}
    for i = 0, tonumber(C.apr_source_n_tensors(h)) - 1 do
        core.check(C.apr_source_tensor(h, i, info))
        local shape, n = shape_of(info), 1
        for _, d in ipairs(shape) do n = n * d end
        out[#out + 1] = {
            name = ffi.string(info.name),
            type = dtype_name(info.type),
            dtype = tonumber(info.type),
            shape = shape,
            elements = n,
            bytes = tonumber(info.nbytes),
            offset = tonumber(info.offset),
            file_offset = tonumber(info.file_offset),
            file = info.file + 1,
            stored_bytes = tonumber(info.stored_bytes),
            codec = ffi.string(info.codec),
        }
    end
    local a = C.apr_source_aprf(h)
    if a ~= nil then
        for i, t in ipairs(out) do
            core.check(C.apr_aprf_tensor(a, i - 1, aprf_info))
            t.filter = ffi.string(C.apr_filter_name(aprf_info.filter))
            t.level = tonumber(aprf_info.level)
            t.chunks = tonumber(aprf_info.n_chunks)
            t.chunk_bytes = tonumber(aprf_info.chunk_bytes)
        end
    end
    return out
end

-- APR files: decodes every chunk of tensor i (0-based, table order) on all
-- cores against its checksum; true, or nil and the message naming the first
-- chunk that fails. Other containers have no chunks to check: true.
function File:check_tensor(i, threads)
    local a = C.apr_source_aprf(handle(self))
    if a == nil then return true end
    local s = C.apr_aprf_read_tensor(a, i, nil, threads or 0)
    if s ~= 0 then return core.failure(s) end
    return true
end

-- Drops what f:tensor_data decoded for the named tensor (nothing for a
-- tensor stored as is): a scan over a large compressed model keeps one
-- decoded tensor at a time. Views and pointers of it become invalid.
function File:release_tensor(name)
    local h = handle(self)
    local i = C.apr_source_find_tensor(h, name)
    if i >= 0 then C.apr_source_tensor_release(h, i) end
end

-- The named tensor's index and info (in the shared box `info`, valid until
-- the next call), or nil and a message if the file has no such tensor.
local function find_tensor(self, name)
    local h = handle(self)
    local i = C.apr_source_find_tensor(h, name)
    if i < 0 then return nil, string.format("%s: no tensor '%s'", self.path, tostring(name)) end
    core.check(C.apr_source_tensor(h, i, info))
    return i, info
end

-- The tensor's bytes as the runtime computes with them: a pointer the
-- source lends (into the mapping for tensors stored as is; a buffer it
-- decoded and keeps while the file is open otherwise) and the byte count.
local function data_of(self, name)
    local i, t = find_tensor(self, name)
    if not i then return nil, t end
    local n = tonumber(t.nbytes)
    local s = C.apr_source_tensor_data(handle(self), i, data_box)
    if s ~= 0 then return core.failure(s) end
    return data_box[0], n
end

-- f:tensor(name) -> an apr.tensor viewing the tensor's bytes (read-only),
-- or nil and a message if the file has no such tensor.
function File:tensor(name)
    local i, t = find_tensor(self, name)
    if not i then return nil, t end
    local dtype, shape = tonumber(t.type), shape_of(t)
    local data, err = data_of(self, name)
    if not data then return nil, err end
    local view = require("apr.tensor").view(data, dtype, shape, self)
    self._views[view] = true
    return view
end

-- The bytes of a tensor: a pointer (as f:tensor's) and the byte count; nil
-- and a message for no such tensor or bytes that do not decode.
function File:tensor_data(name)
    return data_of(self, name)
end

-- ------------------------------------------------------------------ the rest

-- f:sha256([opts]) -> lower-case hex digest of the whole file, from the
-- sidecar cache when it is fresh (opts.cache = false recomputes), with a
-- progress line on a terminal; nil, "interrupted" after Ctrl+C. A split
-- model gives a list: one digest per part, in order.
function File:sha256(opts)
    local checksum = require "apr.checksum"
    if #self.files == 1 then return checksum.digest(self, opts, 1) end
    local list = {}
    for k = 1, #self.files do
        local hex, err = checksum.digest(self, opts, k)
        if not hex then return nil, err end
        list[k] = hex
    end
    return list
end

-- f:copy(path): writes the file again, byte for byte (the GGUF writer
-- re-encodes the header; the data is copied). Returns true or nil, message.
function File:copy(path)
    local g = C.apr_source_gguf(handle(self), 0)
    if g == nil or #self.files ~= 1 then
        return nil, string.format("%s: copy writes one GGUF file byte for byte; this is %s", self.path,
            #self.files > 1 and string.format("a split model of %d files", #self.files) or self.format)
    end
    local s = C.apr_gguf_copy(g, path)
    if s ~= 0 then return core.failure(s) end
    return true
end

-- Releases the mapping now instead of at garbage collection. Raises if a
-- tensor view of the file is still reachable (it would point at nothing).
function File:close()
    local h = rawget(self, "_h")
    if not h then return end
    collectgarbage()
    if next(self._views) then error(self.path .. ": close() while tensor views of it are alive", 2) end
    ffi.gc(h, nil)
    C.apr_source_close(h)
    self._h = nil
end

File.__tostring = function(self)
    return string.format("apr.file(%s, %s v%d, %d tensors)", self.path, self.format, self.version,
        rawget(self, "_h") and tonumber(C.apr_source_n_tensors(self._h)) or 0)
end

return M
