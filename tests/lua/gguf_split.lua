-- gguf_split.lua IN.gguf PREFIX N — writes IN as the N files
-- PREFIX-00001-of-0000N.gguf ... PREFIX-0000N-of-0000N.gguf, laid out as
-- llama.cpp's gguf-split writes a split model (test support; it makes
-- tests/fixtures/split/ and the specs' splits of the fixture models):
--  - every part is a GGUF file of its own, with IN's version (the parts
--    after the first have only the split keys, so the default alignment);
--  - the first part holds all of IN's metadata, then the split keys;
--  - every part holds split.no (uint16, its 0-based number), split.count
--    (uint16, N) and split.tensors.count (int32, IN's tensor count);
--  - IN's tensors in order, ceil(T / N) to a part (the last part may hold
--    fewer), each tensor's bytes copied unchanged.
-- (The layout follows llama.cpp's tools/gguf-split, MIT; the code is
-- apr's own.) Exits 2 on a usage error, 1 when IN cannot be read or a part
-- cannot be written.
local apr = require "apr"
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local input, prefix, n = arg[1], arg[2], tonumber(arg[3])
if not (input and prefix and n and n >= 1 and n <= 99999 and n == math.floor(n)) then
    io.stderr:write("usage: apr run tests/lua/gguf_split.lua IN.gguf PREFIX N\n")
    os.exit(2)
end

local function fail(msg)
    io.stderr:write("gguf_split: ", msg, "\n")
    os.exit(1)
end

local f, err = apr.open(input)
if not f then fail(err) end
if #f.files ~= 1 then fail(input .. " is already split") end
local g = C.apr_source_gguf(f:handle(), 0)
local tensors = f:tensors()
local per = math.ceil(#tensors / n)
if per == 0 and n > 1 then fail(input .. " has no tensors to split") end

local U16, I32 = tonumber(C.APR_GGUF_UINT16), tonumber(C.APR_GGUF_INT32)
local box = ffi.new("apr_gguf_writer *[1]")
local key, value = ffi.new("const char *[1]"), ffi.new("apr_gguf_value")
local ne = ffi.new("int64_t[4]")

for part = 0, n - 1 do
    core.check(C.apr_gguf_writer_new(box))
    local w = ffi.gc(box[0], C.apr_gguf_writer_free)
    core.check(C.apr_gguf_writer_set_version(w, C.apr_gguf_version(g)))
    if part == 0 then
        for i = 0, tonumber(C.apr_gguf_n_kv(g)) - 1 do
            core.check(C.apr_gguf_kv(g, i, key, value))
            core.check(C.apr_gguf_writer_add_value(w, key[0], value))
        end
    end
    core.check(C.apr_gguf_writer_add_int(w, "split.no", U16, part))
    core.check(C.apr_gguf_writer_add_int(w, "split.count", U16, n))
    core.check(C.apr_gguf_writer_add_int(w, "split.tensors.count", I32, #tensors))
    local mine = {}
    for i = part * per + 1, math.min((part + 1) * per, #tensors) do mine[#mine + 1] = tensors[i] end
    for _, t in ipairs(mine) do
        for d = 1, #t.shape do ne[d - 1] = t.shape[d] end
        core.check(C.apr_gguf_writer_add_tensor(w, t.name, t.dtype, #t.shape, ne))
    end
    local path = string.format("%s-%05d-of-%05d.gguf", prefix, part + 1, n)
    local st = C.apr_gguf_writer_begin(w, path)
    if st ~= 0 then fail(select(2, core.failure(st))) end
    for j, t in ipairs(mine) do
        local data, bytes = f:tensor_data(t.name)
        core.check(C.apr_gguf_writer_write(w, j - 1, 0, data, bytes))
    end
    st = C.apr_gguf_writer_finish(w)
    if st ~= 0 then fail(select(2, core.failure(st))) end
end
