-- synth_spec.lua — apr.synth: the plans (tensor types, shapes, metadata,
-- vocabulary) of synthetic models, checked without writing big files.
local synth = require "apr.synth"
local core = require "apr.core"
local C, ffi = core.C, core.ffi

local QWEN_VOCAB = "tests/fixtures/tokenizer/tokenizer.json.zst"

local function by_name(plan)
    local out = {}
    for _, t in ipairs(plan.tensors) do out[t.name] = t end
    return out
end

local function type_name(t) return ffi.string(C.apr_dtype_name(t.dtype)) end

local nbytes_box = ffi.new("uint64_t[1]")
local function plan_bytes(plan)
    local total = 0
    for _, t in ipairs(plan.tensors) do
        local n = 1
        for _, d in ipairs(t.shape) do n = n * d end
        core.check(C.apr_dtype_nbytes(t.dtype, n, nbytes_box))
        total = total + tonumber(nbytes_box[0])
    end
    return total
end

describe("apr.synth", function()
    it("picks llama.cpp's Q4_K_M layers for Q6_K", function()
        -- use_more_bits(i, 64): the first 8, the last 8, and i = 10, 13, ... 55
        local picked = {}
        for i = 0, 63 do if synth.use_more_bits(i, 64) then picked[#picked + 1] = i end end
        assert.same({ 0, 1, 2, 3, 4, 5, 6, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46, 49, 52, 55,
                      56, 57, 58, 59, 60, 61, 62, 63 }, picked)
    end)

    it("plans the 32B Q4_K_M model at its real size", function()
        local plan = assert(synth.plan("qwen2.5-coder-32b", "q4_k_m"))
        assert.equal(3 + 64 * 12, #plan.tensors)
        local t = by_name(plan)
        assert.same({ 5120, 152064 }, t["output.weight"].shape)
        assert.equal("Q6_K", type_name(t["output.weight"]))
        assert.equal("Q4_K", type_name(t["token_embd.weight"]))
        assert.same({ 5120, 1024 }, t["blk.0.attn_k.weight"].shape)   -- 8 KV heads of 128
        assert.same({ 27648, 5120 }, t["blk.0.ffn_down.weight"].shape)
        assert.equal("Q6_K", type_name(t["blk.0.ffn_down.weight"]))
        assert.equal("Q4_K", type_name(t["blk.8.ffn_down.weight"]))
        assert.equal("Q6_K", type_name(t["blk.10.attn_v.weight"]))
        assert.equal("Q4_K", type_name(t["blk.10.attn_q.weight"]))
        assert.equal("F32", type_name(t["blk.3.attn_q.bias"]))
        assert.is_true(math.abs(t["blk.0.attn_q.weight"].std - 1 / math.sqrt(5120)) < 1e-12)
        -- Qwen2.5-Coder-32B-Instruct-Q4_K_M.gguf holds 19.85 GB of tensors
        local bytes = plan_bytes(plan)
        assert.is_true(bytes > 19.8e9 and bytes < 19.9e9, tostring(bytes))
    end)

    it("falls back to Q5_0 and Q8_0 where rows are not whole K blocks (0.5B)", function()
        local plan = assert(synth.plan("qwen2.5-coder-0.5b", "q4_k_m"))
        local t = by_name(plan)
        assert.is_nil(t["output.weight"])                                  -- tied embeddings
        assert.equal("Q8_0", type_name(t["token_embd.weight"]))            -- the output's Q6_K, 896 wide
        assert.equal("Q5_0", type_name(t["blk.5.attn_q.weight"]))
        assert.equal("Q8_0", type_name(t["blk.0.attn_v.weight"]))
        assert.equal("Q5_0", type_name(t["blk.4.attn_v.weight"]))
        assert.equal("Q6_K", type_name(t["blk.0.ffn_down.weight"]))        -- 4864 = 19 blocks
        assert.equal("Q4_K", type_name(t["blk.4.ffn_down.weight"]))
        assert.same({ 896, 128 }, t["blk.0.attn_k.weight"].shape)
    end)

    it("uses one type for every matrix in the q8_0 and f16 layouts", function()
        for layout, want in pairs({ q8_0 = "Q8_0", f16 = "F16" }) do
            local plan = assert(synth.plan("qwen2.5-coder-7b", layout))
            for _, t in ipairs(plan.tensors) do
                assert.equal(#t.shape == 2 and want or "F32", type_name(t))
            end
        end
    end)

    it("writes the metadata keys of a Qwen2 GGUF", function()
        local plan = assert(synth.plan("qwen2.5-coder-7b", "q4_k_m"))
        local md = {}
        for _, m in ipairs(plan.metadata) do md[m[1]] = m[3] end
        assert.equal("qwen2", md["general.architecture"])
        assert.equal(15, md["general.file_type"])
        assert.equal(28, md["qwen2.block_count"])
        assert.equal(3584, md["qwen2.embedding_length"])
        assert.equal(18944, md["qwen2.feed_forward_length"])
        assert.equal(4, md["qwen2.attention.head_count_kv"])
        assert.equal(1e6, md["qwen2.rope.freq_base"])
        assert.equal(152064, #md["tokenizer.ggml.tokens"])
        assert.equal(152063, md["tokenizer.ggml.eos_token_id"])           -- <|im_end|>, last
        assert.equal("Ā", md["tokenizer.ggml.tokens"][1])                   -- byte 0, GPT-2's table
        assert.equal("!", md["tokenizer.ggml.tokens"][34])
        assert.truthy(md["tokenizer.chat_template"]:find("<|im_start|>", 1, true))
    end)

    it("takes a tokenizer.json vocabulary, padded to the embedding size", function()
        local plan = assert(synth.plan("qwen2.5-coder-7b", "q4_k_m", QWEN_VOCAB))
        local md = {}
        for _, m in ipairs(plan.metadata) do md[m[1]] = m[3] end
        local toks, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
        assert.equal(152064, #toks)
        assert.equal("<|im_end|>", toks[151646])
        assert.equal(151645, md["tokenizer.ggml.eos_token_id"])
        assert.equal(151643, md["tokenizer.ggml.bos_token_id"])
        assert.equal(3, types[151646])                                      -- control
        assert.equal(4, types[151658])                                      -- <tool_call>: user-defined
        assert.equal("[PAD152063]", toks[152064])
        assert.equal(5, types[152064])                                      -- unused
        assert.equal(151387, #md["tokenizer.ggml.merges"])
        assert.equal("Ġ Ġ", md["tokenizer.ggml.merges"][1])
    end)

    it("replaces the preset's layer count on request, keeping its geometry", function()
        local plan = assert(synth.plan("qwen2.5-coder-7b", "q4_k_m", nil, 2))
        assert.equal(3 + 2 * 12, #plan.tensors)
        local t = by_name(plan)
        assert.same({ 3584, 18944 }, t["blk.1.ffn_up.weight"].shape)
        assert.is_nil(t["blk.2.ffn_up.weight"])
        local md = {}
        for _, kv in ipairs(plan.metadata) do md[kv[1]] = kv[3] end
        assert.equal(2, md["qwen2.block_count"])
        assert.equal("synthetic-qwen2.5-coder-7b-q4_k_m-2l", md["general.name"])
        assert.equal(28, synth.presets["qwen2.5-coder-7b"].n_layer) -- the preset itself is untouched
    end)

    it("reports unusable input", function()
        assert.same({ nil, "unknown preset 'huge'" }, { synth.plan("huge", "q4_k_m") })
        assert.same({ nil, "layer count must be 1..1024, got 0" }, { synth.plan("tiny", "q4_k_m", nil, 0) })
        local plan, err = synth.plan("tiny", "q4_k_m", "/nonexistent/tokenizer.json")
        assert.is_nil(plan)
        assert.matches("/nonexistent/tokenizer.json", err)
    end)
end)
