-- tokenizer.lua — text to token ids and back, over the runtime's byte-level
-- BPE (runtime/model/tokenizer.c; docs/tokenizer.md).
--
--   local tok = assert(require("apr.tokenizer").open("model.gguf"))
--   local ids = tok:tokenize("<|im_start|>user\nhi", { special = true })
--   print(tok:detokenize(ids))
--   local d = tok:decoder()                 -- streaming: text as it completes
--   for _, id in ipairs(ids) do io.write(d:push(id)) end
--   io.write(d:flush())
--
-- A tokenizer owned by something else (a model) is wrapped without copying:
-- Tokenizer.wrap(handle, owner) keeps `owner` alive as long as the wrapper.
local core = require "apr.core"

local ffi, C = core.ffi, core.C
local bor = require("bit").bor

local M = {}

local Tokenizer = {}
Tokenizer.__index = Tokenizer

local Decoder = {}
Decoder.__index = Decoder

local SPECIAL = tonumber(C.APR_TOKENIZE_SPECIAL)
local ADD_BOS = tonumber(C.APR_TOKENIZE_ADD_BOS)
local SKIP_CONTROL = tonumber(C.APR_DETOK_SKIP_CONTROL)

-- Out-parameter boxes and scratch, made once (resty's habit). The id
-- buffer grows to the largest text seen, up to KEEP ids; bigger ones get a
-- buffer of their own.
local KEEP = 1024 * 1024
local size_box = ffi.new("size_t[1]")
local str_box = ffi.new("const char *[1]")
local ids_buf, ids_cap = ffi.new("int32_t[?]", 256), 256
local text_buf, text_cap = ffi.new("char[?]", 4096), 4096

local function id_buffer(n)
    if n <= ids_cap then return ids_buf end
    local buf = ffi.new("int32_t[?]", n)
    if n <= KEEP then ids_buf, ids_cap = buf, n end
    return buf
end

local function text_buffer(n)
    if n <= text_cap then return text_buf end
    local buf = ffi.new("char[?]", n)
    if n <= 4 * KEEP then text_buf, text_cap = buf, n end
    return buf
end

local function optional_id(id)
    id = tonumber(id)
    return id >= 0 and id or nil
end

-- Ids cross into C as int32_t, where LuaJIT would wrap 2^32 + 5 into 5: an
-- id outside int32 (or not a whole number) is refused here instead.
local function is_int32(id)
    return type(id) == "number" and id == math.floor(id) and id >= -2147483648 and id <= 2147483647
end

local function out_of_range(self, id)
    return nil, string.format("token id %s is outside the vocabulary (0..%d)", tostring(id), self.n_vocab - 1)
end

-- ---------------------------------------------------------------- building

-- wrap(handle [, owner]) -> tokenizer. handle is an apr_tokenizer * (with
-- its own ffi.gc, or owned by `owner`, which the wrapper keeps alive).
function M.wrap(handle, owner)
    if handle == nil then error("tokenizer.wrap: NULL handle", 2) end
    return setmetatable({
        handle = handle,
        owner = owner,
        n_vocab = tonumber(C.apr_tokenizer_n_vocab(handle)),
        bos = optional_id(C.apr_tokenizer_bos(handle)),
        eos = optional_id(C.apr_tokenizer_eos(handle)),
        eot = optional_id(C.apr_tokenizer_eot(handle)),
        add_bos = C.apr_tokenizer_add_bos(handle) ~= 0,
        pre = ffi.string(C.apr_tokenizer_pre(handle)),
    }, Tokenizer)
end

-- open(path) -> tokenizer, or nil and a message naming the file. Reads only
-- the tokenizer.ggml.* metadata; the file is closed before it returns.
function M.open(path)
    if type(path) ~= "string" then error("tokenizer.open: path must be a string", 2) end
    local file = ffi.new("apr_source *[1]")
    local status = C.apr_source_open(path, file)
    if status ~= 0 then return core.failure(status) end
    local box = ffi.new("apr_tokenizer *[1]")
    status = C.apr_tokenizer_from_source(file[0], box)
    C.apr_source_close(file[0])
    if status ~= 0 then
        local _, msg = core.failure(status)
        return nil, path .. ": " .. msg
    end
    return M.wrap(ffi.gc(box[0], C.apr_tokenizer_free))
end

-- ---------------------------------------------------------------- encoding

-- tokenize(text [, opts]) -> array of ids, or nil and a message.
-- opts.special: recognise control and user-defined tokens written in the
--   text ("<|im_end|>"); off by default, so user input stays plain text.
-- opts.add_bos: put BOS first (default false; self.add_bos says whether the
--   model expects it).
-- Any bytes are accepted; the text is not normalized.
function Tokenizer:tokenize(text, opts)
    if type(text) ~= "string" then error("tokenize: text must be a string", 2) end
    local flags = 0
    if opts then
        if opts.special then flags = bor(flags, SPECIAL) end
        if opts.add_bos then flags = bor(flags, ADD_BOS) end
    end
    local cap = #text + 1   -- every token covers at least one byte, BOS aside
    local ids = id_buffer(cap)
    local status = C.apr_tokenize(self.handle, text, #text, flags, ids, cap, size_box)
    if status ~= 0 then return core.failure(status, 2) end
    local out = {}
    for i = 0, tonumber(size_box[0]) - 1 do out[i + 1] = ids[i] end
    return out
end

-- with_bos(ids) -> ids, with BOS put first when the model's tokenizer asks
-- for it (tokenizer.ggml.add_bos_token: self.add_bos) and they do not
-- already begin with it. The one place the rule is applied: every prompt
-- that reaches the engine (apr pass, m:generate, the server) goes through
-- here. ids is changed in place.
function Tokenizer:with_bos(ids)
    if self.add_bos and self.bos and ids[1] ~= self.bos then table.insert(ids, 1, self.bos) end
    return ids
end

-- The ids as an int32_t array, or nil and the first id out of range.
local function id_array(ids, what)
    if type(ids) ~= "table" then error(what .. ": ids must be an array", 3) end
    local n = #ids
    local buf = id_buffer(n)
    for i = 1, n do
        local id = ids[i]
        if type(id) ~= "number" or id ~= math.floor(id) then
            error(string.format("%s: ids[%d] is not a whole number: %s", what, i, tostring(id)), 3)
        end
        if not is_int32(id) then return nil, id end
        buf[i - 1] = id
    end
    return buf, n
end

-- detokenize(ids [, opts]) -> string, or nil and a message (an id out of
-- range). Invalid UTF-8 becomes U+FFFD. opts.skip_control renders control
-- tokens as nothing.
function Tokenizer:detokenize(ids, opts)
    local buf, n = id_array(ids, "detokenize")
    if not buf then return out_of_range(self, n) end
    local flags = opts and opts.skip_control and SKIP_CONTROL or 0
    -- A first guess at the size; the exact size comes back if it is short.
    local cap = 8 * n + 16
    for _ = 1, 2 do
        local out = text_buffer(cap)
        local status = C.apr_detokenize(self.handle, buf, n, flags, out, cap, size_box)
        if status ~= 0 then return core.failure(status, 2) end
        local len = tonumber(size_box[0])
        if len <= cap then return ffi.string(out, len) end
        -- apr_detokenize only reads ids, so the second call sees the same ones.
        cap = len
    end
end

-- ---------------------------------------------------------------- queries

-- token(id) -> the token's text as the vocabulary stores it ("Ġthe"), or nil
-- and a message for an id out of range. token_text is the same.
function Tokenizer:token(id)
    if not is_int32(id) then return out_of_range(self, id) end
    local status = C.apr_token_text(self.handle, id, str_box)
    if status ~= 0 then return core.failure(status, 2) end
    return ffi.string(str_box[0])
end
Tokenizer.token_text = Tokenizer.token

-- piece(id) -> the bytes the token stands for (" the"), possibly part of a
-- UTF-8 sequence.
function Tokenizer:piece(id)
    if not is_int32(id) then return out_of_range(self, id) end
    local status = C.apr_token_piece(self.handle, id, str_box, size_box)
    if status ~= 0 then return core.failure(status, 2) end
    return ffi.string(str_box[0], size_box[0])
end

-- find(text) -> the id of the token whose vocabulary text is exactly text,
-- or nil.
function Tokenizer:find(text)
    if type(text) ~= "string" then error("find: text must be a string", 2) end
    local id = C.apr_tokenizer_find(self.handle, text, #text)
    return optional_id(id)
end

function Tokenizer:is_eog(id) return is_int32(id) and C.apr_token_is_eog(self.handle, id) ~= 0 end
function Tokenizer:is_special(id) return is_int32(id) and C.apr_token_is_special(self.handle, id) ~= 0 end

local TYPES = { [0] = "undefined", "normal", "unknown", "control", "user_defined", "unused", "byte" }

-- type(id) -> "normal", "control", "user_defined", ...; nil out of range.
function Tokenizer:type(id)
    if not is_int32(id) then return nil end
    return TYPES[tonumber(C.apr_token_get_type(self.handle, id))]
end

-- ---------------------------------------------------------------- streaming

-- decoder([opts]) -> an object whose push(id) returns the text that id
-- completes ("" while a UTF-8 sequence is unfinished) and flush() what is
-- held back at the end. opts.skip_control as for detokenize.
function Tokenizer:decoder(opts)
    local box = ffi.new("apr_detok *[1]")
    local flags = opts and opts.skip_control and SKIP_CONTROL or 0
    local status = C.apr_detok_new(self.handle, flags, box)
    if status ~= 0 then return core.failure(status, 2) end
    return setmetatable({ handle = ffi.gc(box[0], C.apr_detok_free), tokenizer = self }, Decoder)
end

-- push(id) -> text, or nil and a message for an id out of range (the
-- decoder is then unchanged).
function Decoder:push(id)
    if type(id) ~= "number" then error("push: id must be a number", 2) end
    if not is_int32(id) then return out_of_range(self.tokenizer, id) end
    local status = C.apr_detok_push(self.handle, id, str_box, size_box)
    if status ~= 0 then return core.failure(status, 2) end
    return ffi.string(str_box[0], size_box[0])
end

function Decoder:flush()
    local status = C.apr_detok_flush(self.handle, str_box, size_box)
    if status ~= 0 then return core.failure(status, 2) end
    return ffi.string(str_box[0], size_box[0])
end

function Decoder:reset()
    C.apr_detok_reset(self.handle)
end

M.Tokenizer = Tokenizer
M.Decoder = Decoder

return M
