-- split_spec.lua — a model split by llama.cpp's gguf-split layout
-- (NAME-00001-of-0000N.gguf ..., written here by tests/lua/gguf_split.lua)
-- is one model to every command: opened from its first part, read in place
-- from all of them, never concatenated (issue 10).
local h = require "tests.lua.helpers"
local apr = require "apr"

local Q8 = "tests/fixtures/models/tiny-q8_0.gguf"

local function split(src, dir, n)
    local r = h.apr(string.format("run tests/lua/gguf_split.lua %s %s/m %d", src, dir, n))
    assert.equal(0, r.code, r.err)
    return string.format("%s/m-00001-of-%05d.gguf", dir, n)
end

describe("a split GGUF model", function()
    local dir, first
    setup(function()
        dir = h.tmpdir()
        first = split(Q8, dir, 4)
    end)
    teardown(function() h.rmtree(dir) end)

    it("opens as one file: the first part's metadata, every part's tensors", function()
        local whole, parts = assert(apr.open(Q8)), assert(apr.open(first))
        assert.equal(4, #parts.files)
        assert.equal(dir .. "/m-00004-of-00004.gguf", parts.files[4].path)
        assert.equal(4, parts.metadata["split.count"])
        assert.equal(whole.metadata["tokenizer.ggml.tokens"][2048], parts.metadata["tokenizer.ggml.tokens"][2048])
        local a, b = whole:tensors(), parts:tensors()
        assert.equal(#a, #b)
        for i = 1, #a do
            assert.equal(a[i].name, b[i].name)
            assert.same(a[i].shape, b[i].shape)
            assert.equal(math.floor((i - 1) / 7) + 1, b[i].file)  -- ceil(27 / 4) = 7 a part
            local x, nx = whole:tensor_data(a[i].name)
            local y, ny = parts:tensor_data(b[i].name)
            assert.equal(nx, ny)
            assert.equal(require("ffi").string(x, nx), require("ffi").string(y, ny))
        end
    end)

    it("generates exactly what the whole file generates", function()
        local args = " --raw --prompt 'fn main() {' --max-tokens 12 --temperature 0 --threads 1"
        local a, b = h.apr("pass " .. Q8 .. args), h.apr("pass " .. first .. args)
        assert.equal(0, b.code, b.err)
        assert.equal(a.out, b.out)
        assert.is_true(#a.out > 0)
    end)

    it("info, inspect and verify describe it as the whole model", function()
        local r = h.apr("info " .. first)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("\nFiles: 4 (a split model)\n", 1, true), r.out)
        assert.truthy(r.out:find("\nLayers: 2\n", 1, true), r.out)
        local n = 0
        for _ in r.out:gmatch("\nSHA256: %x+  m%-0000%d%-of%-00004%.gguf") do n = n + 1 end
        assert.equal(4, n)
        r = h.apr("inspect --tensors " .. first)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("\n27 tensors, ", 1, true), r.out)
        r = h.apr("verify --deep --checksum " .. first)  -- against the sidecars info wrote
        assert.equal(0, r.code, r.out .. r.err)
        assert.truthy(r.out:find("GGUF v3, 25 keys, 27 tensors in 4 files", 1, true), r.out)
        assert.truthy(r.out:find("\nok    sha256 4/4   ", 1, true), r.out)
        assert.truthy(r.out:find("\nok    model ", 1, true), r.out)
        r = h.apr("verify --checksum " .. ("0"):rep(64) .. " " .. first)
        assert.equal(2, r.code)
    end)

    it("opened from another part, or with a part missing, fails in one line naming the part", function()
        local r = h.apr("info " .. dir .. "/m-00002-of-00004.gguf")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("part 2 of 4 of a split model: open its first part, " .. dir .. "/m-00001-of-00004.gguf\n",
            1, true), r.err)
        local lone = h.tmpdir()
        os.execute(string.format("cp %s %s/", first, lone))
        r = h.apr(string.format("pass %s/m-00001-of-00004.gguf --prompt hi", lone))
        h.rmtree(lone)
        assert.equal(1, r.code)
        assert.truthy(r.err:find("part 2 of 4 of the split model: ", 1, true), r.err)
        assert.equal(1, select(2, r.err:gsub("\n", "")))
    end)

    it("tests/fixtures/split is what gguf_split.lua writes", function()
        local d = h.tmpdir()
        split("tests/fixtures/malformed/ok-model.gguf", d, 3)
        for k = 1, 3 do
            local name = string.format("-%05d-of-00003.gguf", k)
            assert.equal(h.read_file("tests/fixtures/split/ok-model" .. name), h.read_file(d .. "/m" .. name))
        end
        h.rmtree(d)
    end)
end)
