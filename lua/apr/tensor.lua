-- tensor.lua — apr.tensor: an n-dimensional array in one of ggml's element
-- types, either a view of memory someone else owns (a tensor of an open
-- GGUF file, a row of logits) or memory of its own.
--
--   local t = apr.tensor.from_table({ 1, 2, 3, 4 }, { 2, 2 })
--   t:shape()        --> { 2, 2 }   (GGUF order: ne0, the contiguous one, first)
--   t[3], #t         --> 3, 4       (flat 1-based index over all elements)
--   t:get(1, 2)      --> 3          (one index per dimension, in shape order)
--   t:row(-1)        --> the last row, a view: { 3, 4 }
--   t:to("q8_0")     --> a new tensor, quantized
--   t:stats()        --> { min=1, max=4, mean=2.5, std=1.118..., nan=0, inf=0, n=4 }
--
-- Reading an element of a block format dequantizes only the block holding
-- it (and keeps it for the next read). Views of files are read-only;
-- tensors made by new/from_table/to are writable with t[i] = v where the
-- type holds single elements (F32, F16, BF16, integers).
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local M = {}

-- ------------------------------------------------------------------ types

-- Upper-case names ("Q4_K") and their ggml numbers, from the runtime's table.
local dtype_of, name_of = {}, {}
for n = 0, tonumber(C.APR_DTYPE_COUNT) - 1 do
    local name = C.apr_dtype_name(n)
    if name ~= nil then
        name = ffi.string(name)
        dtype_of[name], name_of[n] = n, name
    end
end

-- resolve_dtype("q4_k" | "Q4_K" | 12) -> 12; raises for anything else.
local function resolve_dtype(d, level)
    local n = type(d) == "string" and dtype_of[d:upper()] or (type(d) == "number" and name_of[d] and d)
    if not n then error(string.format("unknown element type %s", tostring(d)), (level or 2) + 1) end
    return n
end

local F32, F16, BF16 = tonumber(C.APR_F32), tonumber(C.APR_F16), tonumber(C.APR_BF16)
-- Plain types read and written through a C array of their own type.
local ctype_of = {
    [F32] = "float *", [tonumber(C.APR_F64)] = "double *", [tonumber(C.APR_I8)] = "int8_t *",
    [tonumber(C.APR_I16)] = "int16_t *", [tonumber(C.APR_I32)] = "int32_t *", [tonumber(C.APR_I64)] = "int64_t *",
}

-- ------------------------------------------------------------------ objects

-- A tensor is a userdata proxy (so `#t` works under LuaJIT, which ignores
-- __len on tables) whose fields live in this weak-keyed table:
--   ptr (uint8_t *), dtype, shape (Lua array), numel, nbytes, block_size,
--   block_bytes, writable, owner (what keeps the memory alive), and a
--   one-block cache (buf, buf_block) for element reads of block formats.
local state = setmetatable({}, { __mode = "k" })
local proto = newproxy(true)
local mt = getmetatable(proto)
local methods = {}

local function is_tensor(x) return type(x) == "userdata" and state[x] ~= nil end
M.is_tensor = is_tensor

local function check_shape(shape, bs, level)
    if type(shape) ~= "table" or #shape == 0 or #shape > 4 then
        error("shape must be an array of 1 to 4 dimensions", level + 1)
    end
    local numel = 1
    for i, d in ipairs(shape) do
        if type(d) ~= "number" or d < 0 or d ~= math.floor(d) then
            error(string.format("dimension %d of the shape is not a whole number >= 0: %s", i, tostring(d)), level + 1)
        end
        numel = numel * d
    end
    if shape[1] % bs ~= 0 then
        error(string.format("rows of %d elements are not whole blocks of %d", shape[1], bs), level + 1)
    end
    return numel
end

local nbytes_box = ffi.new("uint64_t[1]")

local function make(ptr, dtype, shape, owner, writable, level)
    local bs = tonumber(C.apr_dtype_block_size(dtype))
    local numel = check_shape(shape, bs, level + 1)
    local st = C.apr_dtype_nbytes(dtype, numel, nbytes_box)
    if st ~= 0 then error(core.last_error(), level + 1) end
    local copy = {}
    for i, d in ipairs(shape) do copy[i] = d end
    local t = newproxy(proto)
    state[t] = {
        ptr = ffi.cast("uint8_t *", ptr), dtype = dtype, shape = copy, numel = numel,
        nbytes = tonumber(nbytes_box[0]), block_size = bs, block_bytes = tonumber(C.apr_dtype_block_bytes(dtype)),
        owner = owner, writable = writable, buf_block = -1,
    }
    return t
end

-- view(ptr, dtype, shape, keepalive) -> a read-only tensor over memory the
-- caller owns; keepalive (any value) is referenced as long as the view is,
-- so the memory outlives it (apr.open's file:tensor passes the file).
function M.view(ptr, dtype, shape, keepalive)
    if ptr == nil then error("view of a NULL pointer", 2) end
    return make(ptr, resolve_dtype(dtype, 2), shape, keepalive or false, false, 2)
end

-- Zeroed memory owned by the tensor, freed by the garbage collector.
local function alloc(nbytes)
    local p = C.apr_alloc(math.max(nbytes, 1))
    if p == nil then return nil, core.last_error() end
    return ffi.gc(p, C.apr_free)
end

-- new(dtype, shape) -> a writable tensor of zeros.
function M.new(dtype, shape)
    dtype = resolve_dtype(dtype, 2)
    local bs = tonumber(C.apr_dtype_block_size(dtype))
    local numel = check_shape(shape, bs, 2)
    if C.apr_dtype_nbytes(dtype, numel, nbytes_box) ~= 0 then error(core.last_error(), 2) end
    local mem, err = alloc(tonumber(nbytes_box[0]))
    if not mem then return nil, err end
    return make(mem, dtype, shape, mem, true, 2)
end

-- from_table(values [, shape [, dtype]]) -> a new tensor. values is a flat
-- array (shape defaults to { #values }) or an array of equal rows (shape
-- defaults to { #row, #rows }); dtype defaults to "f32" and other types are
-- quantized from the float32 values.
function M.from_table(values, shape, dtype)
    if type(values) ~= "table" then error("from_table expects an array", 2) end
    local flat = values
    if type(values[1]) == "table" then
        flat = {}
        local width = #values[1]
        for r, row in ipairs(values) do
            if type(row) ~= "table" or #row ~= width then
                error(string.format("row %d has %s elements, row 1 has %d", r, type(row) == "table" and #row or "no", width), 2)
            end
            for _, v in ipairs(row) do flat[#flat + 1] = v end
        end
        shape = shape or { width, #values }
    end
    shape = shape or { #flat }
    local f32 = M.new(F32, shape)
    local s = state[f32]
    if s.numel ~= #flat then
        error(string.format("%d values for a shape of %d elements", #flat, s.numel), 2)
    end
    local p = ffi.cast("float *", s.ptr)
    for i = 1, #flat do
        local v = flat[i]
        if type(v) ~= "number" then error(string.format("value %d is not a number: %s", i, tostring(v)), 2) end
        p[i - 1] = v
    end
    if dtype == nil or resolve_dtype(dtype, 2) == F32 then return f32 end
    return f32:to(dtype)
end

-- ------------------------------------------------------------------ elements

-- The element at 0-based flat index i, as a Lua number.
local function read(s, i)
    local ct = ctype_of[s.dtype]
    if ct then return tonumber(ffi.cast(ct, s.ptr)[i]) end
    local bs = s.block_size
    local b = math.floor(i / bs)
    if s.buf_block ~= b then
        if not s.buf then s.buf = ffi.new("float[?]", bs) end
        local st = C.apr_dequantize(s.dtype, s.ptr + b * s.block_bytes, s.buf, bs)
        if st ~= 0 then error(core.last_error(), 3) end
        s.buf_block = b
    end
    return tonumber(s.buf[i - b * bs])
end

local one_float = ffi.new("float[1]")

local function write(s, i, v)
    if not s.writable then error("this tensor is a read-only view; copy it with :to()", 3) end
    if type(v) ~= "number" then error("tensor elements are numbers, got " .. type(v), 3) end
    local ct = ctype_of[s.dtype]
    if ct then
        ffi.cast(ct, s.ptr)[i] = v
    elseif s.block_size == 1 then   -- F16, BF16
        one_float[0] = v
        core.check(C.apr_quantize(s.dtype, one_float, s.ptr + i * s.block_bytes, 1), 3)
    else
        error(string.format("cannot set single elements of a %s tensor; convert it with :to(\"f32\")",
            name_of[s.dtype]), 3)
    end
    s.buf_block = -1
end

-- flat(s, i) -> 0-based index of 1-based flat index i, or nil if outside.
local function flat_index(s, i)
    if i ~= math.floor(i) then error("tensor index must be a whole number, got " .. tostring(i), 3) end
    if i < 1 or i > s.numel then return nil end
    return i - 1
end

-- The 0-based flat index of per-dimension indices (1-based, negative counts
-- from the end), or an error naming the offending index.
local function offset_of(s, ...)
    local n = select("#", ...)
    if n ~= #s.shape then
        error(string.format("get needs %d indices for shape [%s], got %d", #s.shape, table.concat(s.shape, ", "), n), 3)
    end
    local off, stride = 0, 1
    for d = 1, n do
        local i, dim = select(d, ...), s.shape[d]
        if type(i) ~= "number" or i ~= math.floor(i) then error("index " .. d .. " is not a whole number", 3) end
        if i < 0 then i = dim + 1 + i end
        if i < 1 or i > dim then
            error(string.format("index %d is %s, outside 1..%d", d, tostring((select(d, ...))), dim), 3)
        end
        off = off + (i - 1) * stride
        stride = stride * dim
    end
    return off
end

-- ------------------------------------------------------------------ methods

function methods:shape()
    local s = state[self]
    local copy = {}
    for i, d in ipairs(s.shape) do copy[i] = d end
    return copy
end

function methods:dtype() return name_of[state[self].dtype] end
function methods:numel() return state[self].numel end
function methods:nbytes() return state[self].nbytes end
function methods:ndim() return #state[self].shape end
-- The memory, as a const void * cdata (valid while the tensor is referenced).
function methods:data() return ffi.cast("const void *", state[self].ptr) end
function methods:writable() return state[self].writable end

-- get(i0, i1, ...) -> the element at those indices, one per dimension in
-- shape order (ne0 first), 1-based; negative indices count from the end.
function methods:get(...)
    local s = state[self]
    return read(s, offset_of(s, ...))
end

function methods:set(...)
    local s = state[self]
    local n = select("#", ...)
    local v = select(n, ...)
    write(s, offset_of(s, unpack({ ... }, 1, n - 1)), v)
end

-- Rows are runs of shape[1] (ne0) contiguous elements; a tensor of shape
-- { ne0, ne1, ne2 } has ne1 * ne2 of them.
function methods:nrows()
    local s = state[self]
    return s.shape[1] == 0 and 0 or s.numel / s.shape[1]
end

-- row(i) -> row i (1-based; -1 is the last) as a view of shape { ne0 } in
-- the same element type, sharing this tensor's memory (no copy).
function methods:row(i)
    local s = state[self]
    local n = self:nrows()
    if type(i) ~= "number" or i ~= math.floor(i) then error("row index must be a whole number", 2) end
    local r = i < 0 and n + 1 + i or i
    if r < 1 or r > n then error(string.format("row %d is outside 1..%d", i, n), 2) end
    local row_bytes = s.nbytes / n
    return make(s.ptr + (r - 1) * row_bytes, s.dtype, { s.shape[1] }, self, s.writable, 2)
end

-- to(dtype) -> a new tensor with the values converted (dequantized to
-- float32, then quantized if dtype is not F32); nil and a message if the
-- values cannot be represented (NaN or Inf going into a block format).
function methods:to(dtype)
    local s = state[self]
    local target = resolve_dtype(dtype, 2)
    if C.apr_dtype_can_dequantize(s.dtype) == 0 then
        error(string.format("%s tensors cannot be converted", name_of[s.dtype]), 2)
    end
    if C.apr_dtype_can_quantize(target) == 0 then
        error(string.format("converting to %s is not supported", name_of[target]), 2)
    end
    local bs = tonumber(C.apr_dtype_block_size(target))
    if s.shape[1] % bs ~= 0 then
        error(string.format("rows of %d elements cannot be %s, whose blocks hold %d", s.shape[1], name_of[target], bs), 2)
    end
    local f32, err = M.new(F32, s.shape)
    if not f32 then return nil, err end
    local dst = state[f32]
    local st = C.apr_dequantize(s.dtype, s.ptr, ffi.cast("float *", dst.ptr), s.numel)
    if st ~= 0 then return core.failure(st) end
    if target == F32 then return f32 end
    local out
    out, err = M.new(target, s.shape)
    if not out then return nil, err end
    st = C.apr_quantize(target, ffi.cast("const float *", dst.ptr), state[out].ptr, s.numel)
    if st ~= 0 then return core.failure(st) end
    return out
end

local stats_box = ffi.new("apr_stats[1]")

-- stats() -> { min, max, mean, std, n, nan, inf } of the dequantized values
-- (min..std over the finite ones; std divides by their count), computed on
-- all cores; nil and a message if interrupted.
function methods:stats()
    local s = state[self]
    local st = C.apr_tensor_stats(s.dtype, s.ptr, s.numel, stats_box)
    if st ~= 0 then return core.failure(st) end
    local r = stats_box[0]
    return { min = r.min, max = r.max, mean = r.mean, std = r.std,
             n = tonumber(r.n), nan = tonumber(r.n_nan), inf = tonumber(r.n_inf) }
end

-- table() -> all elements as a Lua array of numbers (dequantized).
function methods:table()
    local s = state[self]
    local src = self
    if not ctype_of[s.dtype] then src = assert(self:to(F32)) end
    local p = ffi.cast(ctype_of[state[src].dtype], state[src].ptr)
    local out = {}
    for i = 1, s.numel do out[i] = tonumber(p[i - 1]) end
    return out
end

-- ------------------------------------------------------------------ metatable

mt.__index = function(t, k)
    if type(k) == "number" then
        local s = state[t]
        local i = flat_index(s, k)
        return i and read(s, i)
    end
    return methods[k]
end

mt.__newindex = function(t, k, v)
    if type(k) ~= "number" then error("tensors have no field '" .. tostring(k) .. "'", 2) end
    local s = state[t]
    local i = flat_index(s, k)
    if not i then error(string.format("index %s is outside 1..%d", tostring(k), s.numel), 2) end
    write(s, i, v)
end

mt.__len = function(t) return state[t].numel end

local function fmt(v)
    return string.format("%.6g", v)
end

-- tensor Q4_K [256, 512] { 0.0123, -0.0456, 0.00789, 0.0312, ..., -0.0101 }
mt.__tostring = function(t)
    local s = state[t]
    local vals = {}
    local n = math.min(s.numel, 4)
    for i = 0, n - 1 do vals[#vals + 1] = fmt(read(s, i)) end
    if s.numel > 5 then vals[#vals + 1] = "..." end
    if s.numel > 4 then vals[#vals + 1] = fmt(read(s, s.numel - 1)) end
    return string.format("tensor %s [%s] { %s }", name_of[s.dtype], table.concat(s.shape, ", "), table.concat(vals, ", "))
end

mt.__metatable = "apr.tensor"

return M
