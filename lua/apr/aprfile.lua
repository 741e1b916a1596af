-- aprfile.lua — apr.open on an APR v2 file (docs/apr-format.md).
--
--   local f = assert(apr.open("model.apr"))
--   f.format, f.version              --> "APR", 2
--   f.metadata["general.name"]       --> the source GGUF's metadata, verbatim
--   for _, t in ipairs(f:tensors()) do print(t.name, t.codec, t.stored, t.bytes) end
--   local w = f:tensor("blk.0.attn_q.weight")   -- decoded (or mapped, codec none)
--
-- The object answers what a GGUF file's does (lua/apr/file.lua): metadata
-- through the source GGUF's header (the same reader, so the same values),
-- the tensor table with each tensor's codec and stored size added, tensor
-- views, the SHA-256 of the file. A tensor stored with codec none is viewed
-- in the mapping; a compressed one is decoded (its chunks on all cores,
-- each checked against its checksum) into memory the view owns.
local core = require "apr.core"
local file = require "apr.file"
local C, ffi = core.C, core.ffi

local M = {}

local File = file.File
local AprFile = {}
AprFile.__index = function(self, k)
    if k == "metadata" then
        local md = self:_metadata()
        rawset(self, "metadata", md)
        return md
    end
    return AprFile[k] or File[k]
end

local box = ffi.new("apr_aprf *[1]")
local info = ffi.new("apr_aprf_tensor_info")
local chunk = ffi.new("apr_aprf_chunk_info")
local hex = ffi.new("char[65]")

-- apr.open(path) for an APR file -> file, or nil and a message.
function M.open(path)
    local s = C.apr_aprf_open(path, box)
    if s ~= 0 then return core.failure(s) end
    local h = ffi.gc(box[0], C.apr_aprf_close)
    local meta = C.apr_aprf_metadata(h)
    local self = setmetatable({
        path = path,
        format = "APR",
        version = tonumber(C.apr_aprf_version(h)),
        size = tonumber(C.apr_aprf_file_size(h)),
        gguf_version = tonumber(C.apr_gguf_version(meta)),
        gguf_size = tonumber(C.apr_aprf_gguf_size(h)),
        alignment = 4096,
        data_offset = nil,  -- set below: the first chunk's offset
        n_chunks = tonumber(C.apr_aprf_n_chunks(h)),
        _h = meta,          -- the metadata: File's key/value methods read it
        _aprf = h,
        _views = setmetatable({}, { __mode = "k" }),
    }, AprFile)
    C.apr_aprf_file_sha256(h, hex)
    self.file_sha256 = ffi.string(hex)
    if C.apr_aprf_source_sha256(h, hex) ~= 0 then self.source_sha256 = ffi.string(hex) end
    return self
end

local function handle(self)
    local h = rawget(self, "_aprf")
    if not h then error(self.path .. ": the file was closed", 3) end
    return h
end

-- The handle (apr_aprf *) for code that calls the C API directly.
function AprFile:handle() return handle(self) end

function AprFile:mapping()
    return ffi.cast("const uint8_t *", C.apr_aprf_base(handle(self))), self.size
end

local function dtype_name(dtype)
    local n = C.apr_dtype_name(dtype)
    return n ~= nil and ffi.string(n) or tostring(dtype)
end

-- The tensor table in the source GGUF's order: what file.lua's gives
-- (name, type, dtype, shape, elements, bytes, offset: in the source GGUF's
-- data section, file_offset: of its first chunk) and codec ("lz4"), filter,
-- level, stored (bytes in the file), chunks.
function AprFile:tensors()
    local h, out = handle(self), {}
    local base = ffi.cast("const uint8_t *", C.apr_aprf_base(h))
    for i = 0, tonumber(C.apr_aprf_n_tensors(h)) - 1 do
        core.check(C.apr_aprf_tensor(h, i, info))
        local shape, n = {}, 1
        for d = 0, info.n_dims - 1 do shape[d + 1] = tonumber(info.ne[d]); n = n * shape[d + 1] end
        local first = nil
        if info.n_chunks > 0 then
            core.check(C.apr_aprf_chunk(h, i, 0, chunk))
            first = tonumber(chunk.offset)
        end
        out[#out + 1] = {
            name = ffi.string(info.name),
            type = dtype_name(info.type),
            dtype = tonumber(info.type),
            shape = shape,
            elements = n,
            bytes = tonumber(info.nbytes),
            offset = tonumber(info.source_offset),
            file_offset = first,
            codec = ffi.string(C.apr_codec_name(info.codec)),
            filter = ffi.string(C.apr_filter_name(info.filter)),
            level = tonumber(info.level),
            stored = tonumber(info.stored_bytes),
            chunks = tonumber(info.n_chunks),
            chunk_bytes = tonumber(info.chunk_bytes),
        }
        if info.data ~= nil then out[#out].mapped = true end
    end
    self.data_offset = self.data_offset or (out[1] and out[1].file_offset) or 0
    return out
end

-- Tensor i's info (in the shared box), found by name, or nil and a message.
local function find(self, name)
    local h = handle(self)
    local i = C.apr_aprf_find_tensor(h, name)
    if i < 0 then return nil, string.format("%s: no tensor '%s'", self.path, tostring(name)) end
    core.check(C.apr_aprf_tensor(h, i, info))
    return info, i
end

-- The raw bytes of a tensor: pointer, byte count, and the owner of the
-- memory (keep it while using the pointer): the mapping for codec none,
-- else a buffer it was decoded into. nil and a message if the tensor is
-- missing or a chunk fails its checksum.
function AprFile:tensor_data(name)
    local t, i = find(self, name)
    if not t then return nil, i end
    local n = tonumber(t.nbytes)
    if t.data ~= nil then return t.data, n, self end
    local buf = C.apr_alloc(math.max(n, 1))
    if buf == nil then return core.failure(C.APR_ERR_NOMEM) end
    buf = ffi.gc(buf, C.apr_free)
    local s = C.apr_aprf_read_tensor(handle(self), i, buf, 0)
    if s ~= 0 then return core.failure(s) end
    return buf, n, buf
end

-- f:tensor(name) -> an apr.tensor of the tensor's values (read-only), or
-- nil and a message.
function AprFile:tensor(name)
    local data, n, owner = self:tensor_data(name)
    if not data then return nil, n end
    local t = find(self, name)
    local shape = {}
    for d = 0, t.n_dims - 1 do shape[d + 1] = tonumber(t.ne[d]) end
    local view = require("apr.tensor").view(data, tonumber(t.type), shape, { self, owner })
    self._views[view] = true
    return view
end

-- f:check_tensor(i [, threads]) -> true, or nil and the message naming the
-- first chunk of tensor i (0-based, table order) that does not decode to its
-- checksum. Its chunks run on all cores.
function AprFile:check_tensor(i, threads)
    local s = C.apr_aprf_read_tensor(handle(self), i, nil, threads or 0)
    if s ~= 0 then return core.failure(s) end
    return true
end

function AprFile:copy()
    return nil, self.path .. ": an APR file is copied with 'apr convert' (to GGUF) or as a plain file"
end

function AprFile:close()
    local h = rawget(self, "_aprf")
    if not h then return end
    collectgarbage()
    if next(self._views) then error(self.path .. ": close() while tensor views of it are alive", 2) end
    ffi.gc(h, nil)
    C.apr_aprf_close(h)
    self._aprf, self._h = nil, nil
end

AprFile.__tostring = function(self)
    return string.format("apr.file(%s, APR v%d, %d tensors)", self.path, self.version,
        rawget(self, "_aprf") and tonumber(C.apr_aprf_n_tensors(self._aprf)) or 0)
end

return M
