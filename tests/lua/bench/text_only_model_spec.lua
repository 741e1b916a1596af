-- text_only_model_spec.lua — bench/text_only_model.lua on a copy of the tiny
-- synthetic model: the rows of tokens that are not whole UTF-8 text become
-- zero, the others keep their bytes, and greedy decoding then picks only
-- tokens that are text (the original model picks others).
local h = require "tests.lua.helpers"
local utf8 = require "apr.text.utf8"

local MODEL = "tests/fixtures/models/tiny-q8_0.gguf"

local function is_text(tok, id)
    local piece = tok:piece(id)
    return piece ~= "" and utf8.validate(piece) and not tok:is_special(id)
end

-- The ids greedy decoding picks over a few prompts, 160 tokens each.
local function greedy_ids(path)
    local m = assert(require("apr.model").load(path))
    local ids = {}
    for _, prompt in ipairs({ "hello world", "fn main() {", "The sea" }) do
        for t in m:generate(prompt, { max_tokens = 160, ignore_eos = true, temperature = 0 }) do ids[#ids + 1] = t.id end
    end
    return ids
end

describe("bench/text_only_model.lua", function()
    it("clears the output rows of tokens that are not text, and greedy decoding then emits text only", function()
        local dir = h.tmpdir()
        local path = dir .. "/m.gguf"
        os.execute(string.format("cp %s %s", MODEL, path))
        local r = h.apr("run bench/text_only_model.lua " .. path)
        assert.equal(0, r.code, r.err)
        local cleared = tonumber(r.out:match("(%d+) of 2048 rows of output.weight cleared"))
        assert.is_true(cleared and cleared > 0, r.out)

        local tok = assert(require("apr.tokenizer").open(path))
        local before, after = h.read_file(MODEL), h.read_file(path)
        local f = assert(require("apr.file").open(path))
        local out
        for _, t in ipairs(f:tensors()) do if t.name == "output.weight" then out = t end end
        f:close()
        local row = out.bytes / 2048
        local n_zero = 0
        for id = 0, 2047 do
            local s = out.file_offset + id * row + 1
            local bytes = after:sub(s, s + row - 1)
            if is_text(tok, id) then
                assert.equal(before:sub(s, s + row - 1), bytes, "row " .. id .. " changed")
            else
                assert.equal(string.rep("\0", row), bytes, "row " .. id .. " not cleared")
                n_zero = n_zero + 1
            end
        end
        assert.equal(cleared, n_zero)
        -- Everything outside the matrix is as it was.
        assert.equal(before:sub(1, out.file_offset), after:sub(1, out.file_offset))
        assert.equal(#before, #after)

        local bad_before = 0
        for _, id in ipairs(greedy_ids(MODEL)) do if not is_text(tok, id) then bad_before = bad_before + 1 end end
        for _, id in ipairs(greedy_ids(path)) do
            assert.is_true(is_text(tok, id), "greedy decoding picked token " .. id)
        end
        assert.is_true(bad_before > 0, "the original model should pick some tokens that are not text")
        h.rmtree(dir)
    end)
end)
