-- cpu_decode_spec.lua — bench/cpu_decode.lua runs with its defaults when
-- only the default model is installed (`make model` installs no other).
local h = require "tests.lua.helpers"

describe("bench/cpu_decode.lua", function()
    it("runs with its default models when only the default model is installed", function()
        local dir = h.tmpdir()
        -- The tiny fixture under the default model's name: the bench's
        -- choice of files is the test, not the speed.
        assert(os.execute(string.format("cp tests/fixtures/models/tiny-q8_0.gguf %s/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            dir)) == 0)
        local p = assert(io.popen(string.format("APR_MODELS=%s %s run bench/cpu_decode.lua --reps 1 --prompt 8 " ..
            "--gen 2 --no-llama 2>&1; echo \"exit=$?\"", dir, h.apr_bin)))
        local r2 = p:read("*a")
        p:close()
        h.rmtree(dir)
        assert.truthy(r2:find("exit=0", 1, true), r2)
        assert.truthy(r2:find("qwen2.5-coder-0.5b-instruct-q4_k_m", 1, true), r2)
        assert.truthy(r2:find("is not installed: left out", 1, true), r2)
    end)

    it("says how to install the default model when there is none", function()
        local dir = h.tmpdir()
        local p = assert(io.popen(string.format("APR_MODELS=%s %s run bench/cpu_decode.lua --no-llama 2>&1; echo \"exit=$?\"",
            dir, h.apr_bin)))
        local out = p:read("*a")
        p:close()
        h.rmtree(dir)
        assert.truthy(out:find("run `make model`", 1, true), out)
        assert.truthy(out:find("exit=1", 1, true), out)
    end)
end)
