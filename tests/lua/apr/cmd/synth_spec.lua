-- synth_spec.lua — apr synth writes files that apr.open reads back with the
-- planned tensors and weights of the promised mean and spread.
local h = require "tests.lua.helpers"
local apr = require "apr"

local QWEN_VOCAB = "tests/fixtures/tokenizer/tokenizer.json.zst"

local function synth(args)
    return h.apr("synth " .. args)
end

describe("apr synth", function()
    local dir
    before_each(function() dir = h.tmpdir() end)
    after_each(function() h.rmtree(dir) end)

    it("writes the tiny Q4_K_M model with the reference layout and weight statistics", function()
        local out = dir .. "/tiny.gguf"
        local r = synth("--preset tiny --layout q4_k_m --seed 1 " .. out)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("^wrote " .. out:gsub("%p", "%%%0") .. ": tiny q4_k_m, 27 tensors"), r.out)
        local f = assert(apr.open(out))
        -- the same names, types and shapes as the reference generator's file
        local ref = {}
        for _, t in ipairs(assert(apr.open("tests/fixtures/models/tiny-q4_k_m.gguf")):tensors()) do ref[t.name] = t end
        local tensors = f:tensors()
        assert.equal(27, #tensors)
        for _, t in ipairs(tensors) do
            assert.equal(ref[t.name].type, t.type, t.name)
            assert.same(ref[t.name].shape, t.shape, t.name)
        end
        -- matrices: mean ~0, std ~1/sqrt(fan-in); norms ~1; biases small
        for _, t in ipairs(tensors) do
            local s = f:tensor(t.name):stats()
            assert.equal(0, s.nan + s.inf, t.name)
            if #t.shape == 2 then
                local want = 1 / math.sqrt(t.shape[1])
                assert.is_true(math.abs(s.mean) < 0.1 * want, t.name .. " mean " .. s.mean)
                assert.is_true(math.abs(s.std / want - 1) < 0.05, t.name .. " std " .. s.std .. " want " .. want)
            elseif t.name:find("norm") then
                assert.is_true(math.abs(s.mean - 1) < 0.05 and math.abs(s.std - 0.1) < 0.03, t.name)
            else
                assert.is_true(math.abs(s.mean) < 0.01 and math.abs(s.std - 0.02) < 0.01, t.name)
            end
        end
        assert.equal("qwen2", f.metadata["general.architecture"])
        assert.equal(2048, #f.metadata["tokenizer.ggml.tokens"])
    end)

    it("gives the same bytes for the same seed, other bytes for another", function()
        assert.equal(0, synth("--preset tiny --layout q8_0 --seed 5 " .. dir .. "/a.gguf").code)
        assert.equal(0, synth("--preset tiny --layout q8_0 --seed 5 " .. dir .. "/b.gguf").code)
        assert.equal(0, synth("--preset tiny --layout q8_0 --seed 6 " .. dir .. "/c.gguf").code)
        local a, b, c = h.read_file(dir .. "/a.gguf"), h.read_file(dir .. "/b.gguf"), h.read_file(dir .. "/c.gguf")
        assert.is_true(#a > 1e6)
        assert.is_true(a == b)
        assert.is_true(a ~= c and #a == #c)
    end)

    it("does not depend on the thread count", function()
        local args = "--preset gqa5 --layout q4_k_m --seed 2 "
        local p = assert(io.popen("APR_THREADS=1 " .. h.apr_bin .. " synth " .. args .. dir .. "/one.gguf >/dev/null 2>&1; echo $?"))
        local code = tonumber(p:read("*a"))
        p:close()
        assert.equal(0, code)
        assert.equal(0, synth("--preset gqa5 --layout q4_k_m --seed 2 " .. dir .. "/many.gguf").code)
        assert.is_true(h.read_file(dir .. "/one.gguf") == h.read_file(dir .. "/many.gguf"))
    end)

    it("writes F16 weights and a tokenizer.json vocabulary", function()
        local out = dir .. "/f16.gguf"
        local r = synth("--preset tiny --layout f16 --vocab " .. QWEN_VOCAB .. " " .. out)
        assert.equal(0, r.code, r.err)
        local f = assert(apr.open(out))
        local s = f:tensor("blk.0.ffn_down.weight"):stats()
        assert.equal("F16", f:tensor("blk.0.ffn_down.weight"):dtype())
        assert.is_true(math.abs(s.std * math.sqrt(512) - 1) < 0.03)
        -- the first 2045 Qwen tokens and the merges among them, as the reference fixture
        local ref = assert(apr.open("tests/fixtures/models/tiny-f16.gguf")).metadata
        for _, k in ipairs({ "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges" }) do
            assert.same(ref[k], f.metadata[k], k)
        end
        assert.equal(ref["tokenizer.ggml.eos_token_id"], f.metadata["tokenizer.ggml.eos_token_id"])
    end)

    it("stops on Ctrl+C with exit code 130 and leaves no file behind", function()
        -- the 7B file (4.7 GB) takes seconds to write even on a fast disk
        -- (the 0.5B one could be done in 0.4 s): interrupt it once writing began
        local cmd = string.format("%s synth --preset qwen2.5-coder-7b --layout q4_k_m %s/big.gguf >/dev/null 2>%s/err & " ..
            "pid=$!; for i in $(seq 200); do [ -s %s/big.gguf.tmp ] && break; sleep 0.05; done; " ..
            "kill -INT $pid; wait $pid; echo $?", h.apr_bin, dir, dir, dir)
        local p = assert(io.popen(cmd))
        local code = tonumber(p:read("*a"))
        p:close()
        assert.equal(130, code)
        assert.equal(string.format("apr synth: interrupted; %s/big.gguf was not written\n", dir),
            h.read_file(dir .. "/err"))
        os.remove(dir .. "/err")
        p = assert(io.popen("ls " .. dir))
        assert.equal("", p:read("*a"))
        p:close()
    end)

    it("fails with one line and leaves no file behind", function()
        local out = dir .. "/x.gguf"
        local r = synth("--preset tiny --vocab " .. dir .. "/missing.json " .. out)
        assert.equal(1, r.code)
        assert.matches("^apr synth: .*missing.json: No such file or directory\n$", r.err)
        r = synth("--preset tiny " .. dir .. "/no/such/dir/x.gguf")
        assert.equal(1, r.code)
        r = synth("--preset enormous " .. out)
        assert.equal(2, r.code)
        r = synth("--layout q8_0 " .. out)
        assert.equal(2, r.code)
        assert.matches("%-%-preset is required", r.err)
        local p = assert(io.popen("ls " .. dir))
        assert.equal("", p:read("*a"))
        p:close()
    end)

    it("replaces only regular files: a device or pipe named as OUT stays what it is", function()
        -- (as root, a rename over /dev/null would put the model in its place)
        local fifo = dir .. "/pipe"
        assert(os.execute("mkfifo " .. fifo) == 0)
        local r = synth("--preset tiny --layout q8_0 " .. fifo)
        assert.same({ 1, "apr synth: " .. fifo .. ": not a regular file\n" }, { r.code, r.err })
        assert.equal("fifo", require("luv").fs_lstat(fifo).type)
        os.remove(fifo)
    end)
end)
