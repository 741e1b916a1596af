-- file.lua — apr.open: a GGUF file, its metadata and its tensors.
--
--   local f = assert(apr.open("model.gguf"))
--   f.format, f.version          --> "GGUF", 3
--   f.metadata["general.name"]   --> "Qwen2.5-Coder-32B-Instruct"
--   for _, t in ipairs(f:tensors()) do print(t.name, t.type, t.bytes) end
--   local w = f:tensor("blk.0.attn_q.weight")   -- an apr.tensor view
--
-- The file is memory-mapped and was validated when opened (docs/gguf.md),
-- so nothing read from it here can point outside it. Tensor views keep the
-- file open; the mapping goes away when the file object and every view of
-- it are garbage, or at f:close().
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

local gguf_box = ffi.new("apr_gguf *[1]")
local key_box = ffi.new("const char *[1]")
local value = ffi.new("apr_gguf_value")
local info = ffi.new("apr_gguf_tensor_info")

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
        core.check(C.apr_gguf_array_get(h, v, i - 1, elem))
        if et == T.STRING then
            out[i] = ffi.string(elem.data, elem.len)
        else
            out[i] = to_lua(h, ffi.new("apr_gguf_value", elem))
        end
    end
    return out
end

-- ------------------------------------------------------------------ open

-- The format a file's first bytes name: "APR", "GGUF", or nil.
function M.sniff(path)
    local fh = io.open(path, "rb")
    local magic = fh and fh:read(4)
    if fh then fh:close() end
    if magic == "APRM" then return "APR" elseif magic == "GGUF" then return "GGUF" end
    return nil
end

-- apr.open(path) -> file, or nil and a message naming the problem. An APR
-- file (docs/apr-format.md) opens as lua/apr/aprfile.lua's object, which
-- answers the same methods.
function M.open(path)
    if type(path) ~= "string" then error("apr.open: path must be a string", 2) end
    if M.sniff(path) == "APR" then return require("apr.aprfile").open(path) end
    local s = C.apr_gguf_open(path, gguf_box)
    if s ~= 0 then return core.failure(s) end
    local h = ffi.gc(gguf_box[0], C.apr_gguf_close)
    return setmetatable({
        path = path,
        format = "GGUF",
        version = tonumber(C.apr_gguf_version(h)),
        size = tonumber(C.apr_gguf_file_size(h)),
        alignment = tonumber(C.apr_gguf_alignment(h)),
        data_offset = tonumber(C.apr_gguf_data_offset(h)),
        _h = h,
        _views = setmetatable({}, { __mode = "k" }),
    }, File)
end

local function handle(self)
    local h = rawget(self, "_h")
    if not h then error(self.path .. ": the file was closed", 3) end
    return h
end

-- The handle (apr_gguf *) for code that calls the C API directly; valid
-- while the file object lives.
function File:handle() return handle(self) end

-- The mapped bytes of the whole file: pointer and size.
function File:mapping()
    return ffi.cast("const uint8_t *", C.apr_gguf_base(handle(self))), self.size
end

-- Keys in file order.
function File:keys()
    local h, out = handle(self), {}
    for i = 0, tonumber(C.apr_gguf_n_kv(h)) - 1 do
        core.check(C.apr_gguf_kv(h, i, key_box, value))
        out[#out + 1] = ffi.string(key_box[0])
    end
    return out
end

-- The value of one key (nil if absent) and its type: "uint32", "string",
-- "array[string]", "array[array]", ...
function File:get(key)
    local h = handle(self)
    local i = C.apr_gguf_find_kv(h, key)
    if i < 0 then return nil end
    core.check(C.apr_gguf_kv(h, i, key_box, value))
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

-- The tensor table in file order: { name, type ("Q4_K"), dtype (number),
-- shape (GGUF order, ne0 first), elements, bytes, offset (from the data
-- section), file_offset (from the file's start) }.
function File:tensors()
    local h, out = handle(self), {}
    for i = 0, tonumber(C.apr_gguf_n_tensors(h)) - 1 do
        core.check(C.apr_gguf_tensor(h, i, info))
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
            file_offset = self.data_offset + tonumber(info.offset),
        }
    end
    return out
end

-- The named tensor's info (in the shared box `info`, valid until the next
-- call), or nil and a message if the file has no such tensor.
local function find_tensor(self, name)
    local h = handle(self)
    local i = C.apr_gguf_find_tensor(h, name)
    if i < 0 then return nil, string.format("%s: no tensor '%s'", self.path, tostring(name)) end
    core.check(C.apr_gguf_tensor(h, i, info))
    return info
end

-- f:tensor(name) -> an apr.tensor viewing the tensor's bytes in the mapping
-- (read-only), or nil and a message if the file has no such tensor.
function File:tensor(name)
    local t, err = find_tensor(self, name)
    if not t then return nil, err end
    local view = require("apr.tensor").view(t.data, tonumber(t.type), shape_of(t), self)
    self._views[view] = true
    return view
end

-- The raw bytes of a tensor: pointer into the mapping and byte count.
function File:tensor_data(name)
    local t, err = find_tensor(self, name)
    if not t then return nil, err end
    return t.data, tonumber(t.nbytes)
end

-- ------------------------------------------------------------------ the rest

-- f:sha256([opts]) -> lower-case hex digest of the whole file, from the
-- sidecar cache when it is fresh (opts.cache = false recomputes), with a
-- progress line on a terminal; nil, "interrupted" after Ctrl+C.
function File:sha256(opts)
    return require("apr._checksum").digest(self, opts)
end

-- f:copy(path): writes the file again, byte for byte (the GGUF writer
-- re-encodes the header; the data is copied). Returns true or nil, message.
function File:copy(path)
    local s = C.apr_gguf_copy(handle(self), path)
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
    C.apr_gguf_close(h)
    self._h = nil
end

File.__tostring = function(self)
    return string.format("apr.file(%s, GGUF v%d, %d tensors)", self.path, self.version,
        rawget(self, "_h") and tonumber(C.apr_gguf_n_tensors(self._h)) or 0)
end

M.File = File  -- lua/apr/aprfile.lua inherits the metadata methods

return M
