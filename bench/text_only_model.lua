-- text_only_model.lua — makes a synthetic model (`apr synth`, random
-- weights) emit text under greedy decoding, so that every server can stream
-- its answers: the rows of the output matrix (output.weight, or
-- token_embd.weight where the two are tied) of tokens that are not whole
-- UTF-8 text — pieces of a longer character, special and control tokens —
-- become zero. Their logits are then exactly 0, never the largest of the
-- ~150K random ones, so the argmax only ever picks a token that is text.
--
-- Why: llama-server (upstream 34af94c) parses every answer it generates,
-- on every endpoint, and a final answer that is not valid UTF-8 fails the
-- request with HTTP 500 "The model produced output that does not match the
-- expected ... format" (common/chat.cpp); on a synthetic Qwen2.5 with the
-- real vocabulary, 3 requests of 6 failed so. Zero blocks are zero in every
-- block format (their scale is 0), the matrix keeps its shape and type, so
-- the work per token is unchanged; every system reads the same file.
--
--   apr run bench/text_only_model.lua MODEL.gguf     (rewrites it in place)
local utf8 = require "apr.text.utf8"

local path = arg[1]
if not path then
    io.stderr:write("usage: apr run bench/text_only_model.lua MODEL.gguf\n")
    return 2
end
local f = assert(require("apr.file").open(path))
local tok = assert(require("apr.tokenizer").open(path))
local out
for _, t in ipairs(f:tensors()) do
    if t.name == "output.weight" then out = t end
end
if not out then
    for _, t in ipairs(f:tensors()) do
        if t.name == "token_embd.weight" then out = t end
    end
end
f:close()
assert(out, path .. ": no output.weight nor token_embd.weight")
local n_vocab = out.shape[2]
assert(out.bytes % n_vocab == 0, "rows of " .. out.name .. " are not whole")
local row = out.bytes / n_vocab

local zeros = string.rep("\0", row)
local h = assert(io.open(path, "r+b"))
local cleared = 0
for id = 0, n_vocab - 1 do
    local piece = tok:piece(id)
    local text = piece and piece ~= "" and utf8.validate(piece) and not tok:is_special(id)
    if not text then
        assert(h:seek("set", out.file_offset + id * row))
        assert(h:write(zeros))
        cleared = cleared + 1
    end
end
assert(h:close())
-- The digest sidecar (apr info, apr bench's Ollama upload) no longer holds.
os.remove(path .. ".sha256")
print(string.format("%s: %d of %d rows of %s cleared (tokens that are not whole UTF-8 text); %d keep their weights",
    path, cleared, n_vocab, out.name, n_vocab - cleared))
return 0
