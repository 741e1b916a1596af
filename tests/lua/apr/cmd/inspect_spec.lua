-- inspect_spec.lua — apr inspect: metadata listing, tensor table, per-type
-- summary, statistics.
local h = require "tests.lua.helpers"
local cjson = require "cjson"

local Q4 = "tests/fixtures/models/tiny-q4_k_m.gguf"

describe("apr inspect", function()
    it("lists the metadata, abbreviating long arrays", function()
        local r = h.apr("inspect " .. Q4)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("GGUF v3, 22 keys, 27 tensors, data at byte 59616 (alignment 32)", 1, true))
        assert.truthy(r.out:find("\n  general.file_type%s+uint32%s+15\n"))
        assert.truthy(r.out:find('tokenizer.ggml.tokens%s+array%[string%]%s+%["!", "\\x22", "#", "%$", ...%] %(2048%)'))
    end)

    it("--tensors prints the table and a summary per type", function()
        local r = h.apr("inspect --tensors " .. Q4)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("\ntoken_embd.weight%s+Q4_K%s+%[256, 2048%]%s+294912\n"), r.out)
        assert.truthy(r.out:find("\nblk.1.ffn_down.weight%s+Q6_K%s+%[512, 256%]%s+107520\n"), r.out)
        assert.truthy(r.out:find("\n27 tensors, 2.2M parameters, 1.4 MB\n", 1, true), r.out)
        assert.truthy(r.out:find("\nQ4_K%s+13%s+866304%s+60.2%%\nQ6_K%s+3%s+564480%s+39.2%%\nF32%s+11%s+9216%s+0.6%%\n"), r.out)
    end)

    it("--stats adds the dequantized values' statistics", function()
        local r = h.apr("inspect --tensors --stats --json tests/fixtures/models/tiny-f16.gguf")
        assert.equal(0, r.code, r.err)
        local v = cjson.decode(r.out)
        assert.equal(27, #v.tensors)
        for _, t in ipairs(v.tensors) do
            local s = t.stats
            assert.is_table(s, t.name)
            assert.equal(0, s.nan)
            assert.equal(0, s.inf)
            assert.is_true(s.min <= s.mean and s.mean <= s.max, t.name)
            if t.name:match("attn_q%.weight$") then
                -- random weights of std 1/sqrt(fan-in): fan-in 256
                assert.is_true(math.abs(s.std - 1 / 16) < 0.005, t.name .. " std " .. s.std)
            end
        end
        -- F16: token_embd and output (256 x 2048), 7 matrices in each of 2 layers
        local params = 2 * 256 * 2048 + 2 * (2 * 256 * 256 + 2 * 256 * 128 + 3 * 256 * 512)
        assert.same({ type = "F16", count = 16, bytes = 2 * params, parameters = params, share = v.types[1].share },
            v.types[1])
    end)

    it("refuses --stats without --tensors, and bad files", function()
        assert.equal(2, h.apr("inspect --stats " .. Q4).code)
        local r = h.apr("inspect --tensors tests/fixtures/malformed/duplicate-tensor.gguf")
        assert.equal(1, r.code)
        assert.truthy(r.err:match("^apr inspect: [^\n]*duplicate tensor name[^\n]*\n$"), r.err)
    end)
end)

describe("apr inspect on an APR file", function()
    it("lists the metadata of its source, and each tensor's codec and stored size", function()
        local dir = h.tmpdir()
        assert.equal(0, h.apr("convert " .. Q4 .. " -o " .. dir .. "/m.apr --compression lz4").code)
        local r = h.apr("inspect " .. dir .. "/m.apr")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("m.apr: APR v2 of a GGUF v3 (1499616 bytes), ", 1, true), r.out)
        local g = h.apr("inspect " .. Q4).out
        -- the same key lines as the GGUF's
        assert.equal(g:gsub("^[^\n]*\n", ""), r.out:gsub("^[^\n]*\n", ""))
        r = h.apr("inspect --tensors " .. dir .. "/m.apr")
        assert.truthy(r.out:find("CODEC       STORED  RATIO CHUNKS", 1, true), r.out)
        assert.truthy(r.out:match("\ntoken_embd%.weight +Q4_K +%[256, 2048%] +294912  %a+ +%d+ +[%d.]+%% +1\n"), r.out)
        local j = cjson.decode(h.apr("inspect --tensors --stats --json " .. dir .. "/m.apr").out)
        assert.equal(27, #j.tensors)
        assert.truthy(j.tensors[1].codec and j.tensors[1].stored and j.tensors[1].stats)
        h.rmtree(dir)
    end)
end)
