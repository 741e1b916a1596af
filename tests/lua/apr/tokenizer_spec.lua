-- tokenizer_spec.lua — apr.tokenizer on the real Qwen2 vocabulary: llama.cpp's
-- reference vectors, round trips, streaming, special tokens, bad input, and
-- a cross-check against Hugging Face `tokenizers` on tokenizer.json.
local h = require "tests.lua.helpers"
local T = require "apr.tokenizer"
local cjson = require "cjson"

local FIXTURES = "tests/fixtures/tokenizer/"
local PYTHON = ".cache/pyenv/bin/python"

local dir, tok

local function decompress(name)
    local out = dir .. "/" .. name
    assert(os.execute(string.format("zstd -q -d -f -o '%s' '%s%s.zst'", out, FIXTURES, name)) == 0, "zstd failed")
    return out
end

-- A seeded generator local to this spec (math.random's state is global).
local function rng(seed)
    local state = seed
    return function(n)
        state = (state * 1103515245 + 12345) % 2147483648
        return state % n + 1
    end
end

local PARTS = {
    "the", " quick", "fox", " don't", " I'M", "'s", "'", "static int", "main(void)", "{", "}", " = ", "->",
    "42", "1234567", "3.14", "\u{663}\u{664}", "\u{ff11}", "\u{b2}", " ", "  ", "    ", "\t", "\n", "\n\n",
    "\r\n", " \n  ", "\u{a0}", "\u{3000}", "\u{2028}", "日本語", "한국어", "привет", "αβγ", "سلام", "हिं",
    "🙂", "🦙", "👍🏽", "👨\u{200d}👩\u{200d}👧", "❤\u{fe0f}", "e\u{301}", "a\u{308}\u{301}", "\u{301}",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_", "|>", "<|", "<tool_call>", "[PAD151650]",
}

local function random_text(next_int, parts)
    local out = {}
    for _ = 1, next_int(parts) do out[#out + 1] = PARTS[next_int(#PARTS)] end
    return table.concat(out)
end

local function read_vectors()
    local inp = h.read_file(FIXTURES .. "ggml-vocab-qwen2.gguf.inp")
    local lines = {}
    for line in h.read_file(FIXTURES .. "ggml-vocab-qwen2.gguf.out"):gmatch("([^\n]*)\n") do
        lines[#lines + 1] = line
    end
    local vectors, pos = {}, 1
    local sep = "\n__ggml_vocab_test__\n"
    while true do
        local a, b = inp:find(sep, pos, true)
        if not a then break end
        local ids = {}
        for id in lines[#vectors + 1]:gmatch("%d+") do ids[#ids + 1] = tonumber(id) end
        vectors[#vectors + 1] = { text = inp:sub(pos, a - 1), ids = ids }
        pos = b + 1
    end
    return vectors
end

describe("apr.tokenizer", function()
    setup(function()
        dir = h.tmpdir()
        tok = assert(T.open(decompress("ggml-vocab-qwen2.gguf")))
    end)

    teardown(function()
        tok = nil
        collectgarbage()
        h.rmtree(dir)
    end)

    it("gives llama.cpp's ids for all 46 reference strings", function()
        local vectors = read_vectors()
        assert.equal(46, #vectors)
        for i, v in ipairs(vectors) do
            assert.same(v.ids, tok:tokenize(v.text), "vector " .. i .. ": " .. v.text)
        end
    end)

    it("reads the vocabulary's facts", function()
        assert.equal(151936, tok.n_vocab)
        assert.equal(151643, tok.bos)
        assert.equal(151643, tok.eos)
        assert.equal(151645, tok.eot)
        assert.equal("qwen2", tok.pre)
        assert.is_false(tok.add_bos)
        assert.equal("Ġthe", tok:token(279))
        assert.equal("Ġthe", tok:token_text(279))
        assert.equal(" the", tok:piece(279))
        assert.equal(151644, tok:find("<|im_start|>"))
        assert.is_nil(tok:find("not a token"))
        assert.equal("control", tok:type(151644))
        assert.equal("normal", tok:type(279))
        assert.is_nil(tok:type(-1))
        assert.is_true(tok:is_eog(151645))
        assert.is_false(tok:is_eog(151644))
        assert.is_true(tok:is_special(151644))
        assert.is_false(tok:is_special(279))
    end)

    it("recognises special tokens only when asked", function()
        local text = "<|im_start|>user\nhi<|im_end|>"
        assert.same({ 151644, 872, 198, 6023, 151645 }, tok:tokenize(text, { special = true }))
        local plain = tok:tokenize(text)
        assert.truthy(#plain > 5)
        for _, id in ipairs(plain) do assert.is_false(tok:is_special(id)) end
        assert.equal(text, tok:detokenize(plain))
        assert.same({ 151643, 6023 }, tok:tokenize("hi", { add_bos = true }))
    end)

    it("round-trips random UTF-8 text", function()
        local next_int = rng(12345)
        for round = 1, 300 do
            local text = random_text(next_int, 30)
            for _, special in ipairs({ false, true }) do
                local ids = tok:tokenize(text, { special = special })
                assert.equal(text, tok:detokenize(ids), "round " .. round)
            end
        end
    end)

    it("streams exactly the whole text, holding back split characters", function()
        local next_int = rng(777)
        for _ = 1, 100 do
            local ids = {}
            for i = 1, next_int(80) do
                -- byte tokens 0..255 and whole tokens, so sequences split
                ids[i] = next_int(4) > 1 and next_int(256) - 1 or next_int(tok.n_vocab) - 1
            end
            local d, parts = tok:decoder(), {}
            for _, id in ipairs(ids) do parts[#parts + 1] = assert(d:push(id)) end
            parts[#parts + 1] = d:flush()
            assert.equal(tok:detokenize(ids), table.concat(parts))
        end
        -- 🙂 is F0 9F 99 82: four byte tokens, text only at the last
        local bytes = {}
        for i, b in ipairs({ 0xF0, 0x9F, 0x99, 0x82 }) do bytes[i] = tok:tokenize(string.char(b))[1] end
        local d = tok:decoder()
        assert.same({ "", "", "", "🙂" }, { d:push(bytes[1]), d:push(bytes[2]), d:push(bytes[3]), d:push(bytes[4]) })
        assert.equal("", d:flush())
        assert.equal("", d:push(bytes[1]))
        assert.equal("\u{fffd}", d:flush())
    end)

    it("turns invalid UTF-8 into U+FFFD", function()
        local ids = tok:tokenize("a\xff\xc0\xafb\xe6\x97")
        assert.equal("a\u{fffd}\u{fffd}\u{fffd}b\u{fffd}", tok:detokenize(ids))
        local pieces = {}
        for i, id in ipairs(ids) do pieces[i] = tok:piece(id) end
        assert.equal("a\xff\xc0\xafb\xe6\x97", table.concat(pieces))   -- the bytes survive tokenizing
    end)

    it("skips control tokens on request", function()
        local ids = tok:tokenize("<|im_start|>hi<|im_end|>", { special = true })
        assert.equal("hi", tok:detokenize(ids, { skip_control = true }))
        local d = tok:decoder({ skip_control = true })
        assert.equal("", d:push(151644))
    end)

    it("reports bad ids and bad files as nil and a message", function()
        local s, err = tok:detokenize({ 9707, 151936 })
        assert.is_nil(s)
        assert.truthy(err:find("151936", 1, true))
        s, err = tok:detokenize({ 2 ^ 32 + 5 })
        assert.is_nil(s)
        assert.truthy(err:find("4294967301", 1, true))
        assert.is_nil((tok:token(-1)))
        assert.is_nil((tok:decoder():push(1e10)))
        local t2
        t2, err = T.open("/nonexistent/vocab.gguf")
        assert.is_nil(t2)
        assert.truthy(err:find("/nonexistent/vocab.gguf", 1, true))
        t2, err = T.open("README.md")
        assert.is_nil(t2)
        assert.truthy(err:find("README.md", 1, true))
        assert.has_error(function() tok:tokenize(42) end)
        assert.has_error(function() tok:detokenize({ 1.5 }) end)
        assert.has_error(function() tok:detokenize("1 2") end)
    end)

    it("wraps a handle owned by someone else", function()
        local owner = { tokenizer = tok }
        local w = T.wrap(tok.handle, owner)
        assert.equal(owner, w.owner)
        assert.same(tok:tokenize("hello"), w:tokenize("hello"))
        assert.has_error(function() T.wrap(nil) end)
    end)

    it("agrees with Hugging Face tokenizers on random code and text", function()
        local probe = io.popen(PYTHON .. " -c 'import tokenizers' 2>/dev/null; echo $?")
        local code = probe and tonumber(probe:read("*a"))
        if probe then probe:close() end
        if code ~= 0 then
            pending("the oracle venv lacks the tokenizers package: run `make deps`")
            return
        end
        local out = dir .. "/oracle.jsonl"
        local cmd = string.format("%s tests/lua/apr/tokenizer_oracle.py '%s' 2024 400 '%s' %s", PYTHON,
            decompress("tokenizer.json"), out,
            "runtime/model/bpe.c runtime/model/pretokenize.c lua/apr/tokenizer.lua runtime/include/apr.h")
        assert(os.execute(cmd) == 0, "the oracle failed: " .. cmd)
        local n = 0
        for line in io.lines(out) do
            local case = cjson.decode(line)
            local ids = tok:tokenize(case.text, { special = true })
            assert.same(case.ids, ids, case.text)
            n = n + 1
        end
        assert.equal(400, n)
    end)
end)
