-- model_fixtures.lua — models the generation specs share (not a spec).
local M = {}

M.TINY = "tests/fixtures/models/tiny-q8_0.gguf"

-- The tiny model declares a training context of 4096, which the runtime
-- will not exceed. Long outputs and long prompts are tested on a copy in
-- `dir` that declares 32768: qwen2.context_length patched in place (the
-- key, its uint32 type tag, then the value).
function M.long_context_copy(dir)
    local f = assert(io.open(M.TINY, "rb"))
    local bytes = f:read("*a")
    f:close()
    local key = "qwen2.context_length"
    local at = assert(bytes:find(key, 1, true), "no context_length key")
    local value_at = at + #key + 4
    assert(bytes:sub(at + #key, at + #key + 3) == "\4\0\0\0", "context_length is not a uint32")
    assert(bytes:sub(value_at, value_at + 3) == "\0\16\0\0", "context_length is not 4096")
    local path = dir .. "/tiny-32k.gguf"
    f = assert(io.open(path, "wb"))
    f:write(bytes:sub(1, value_at - 1), "\0\128\0\0", bytes:sub(value_at + 4))
    f:close()
    return path
end

-- A copy of the tiny model in `dir` without a chat template: the key is
-- renamed in place (same length), so the file stays valid.
function M.without_template_copy(dir)
    local f = assert(io.open(M.TINY, "rb"))
    local bytes = f:read("*a")
    f:close()
    local key = "tokenizer.chat_template"
    local at = assert(bytes:find(key, 1, true), "no chat template key")
    local path = dir .. "/tiny-no-template.gguf"
    f = assert(io.open(path, "wb"))
    f:write(bytes:sub(1, at - 1), "tokenizer.chat_templatX", bytes:sub(at + #key))
    f:close()
    return path
end

return M
