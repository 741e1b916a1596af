-- convert_spec.lua — apr convert: GGUF -> APR -> GGUF gives back the same
-- bytes (SHA-256) for every fixture and the default model with every codec;
-- --verify, --json; usage errors; a corrupt APR fails with one line naming
-- the tensor and chunk; an interrupted conversion leaves nothing under OUT.
local h = require "tests.lua.helpers"
local cjson = require "cjson"

local FIXTURES = { "tiny-q8_0.gguf", "tiny-q4_k_m.gguf", "tiny-f16.gguf", "gqa5-q4_k_m.gguf" }
local DEFAULT = "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


local function sha256(path)
    local p = assert(io.popen("sha256sum '" .. path .. "'"))
    local out = p:read("*a")
    p:close()
    return out:match("^(%x+)")
end

local function ls(dir)
    local p = assert(io.popen("ls -A '" .. dir .. "'"))
    local out = p:read("*a")
    p:close()
    return out
end

local function same_bytes(a, b) return os.execute("cmp -s '" .. a .. "' '" .. b .. "'") == 0 end

local digests = {}

-- GGUF -> APR (codec) -> GGUF in dir; returns the APR's JSON summary.
local function round_trip(src, dir, codec)
    local apr_path, back = dir .. "/m-" .. codec .. ".apr", dir .. "/m-" .. codec .. ".gguf"
    local r = h.apr(string.format("convert %s -o %s --compression %s --json", src, apr_path, codec))
    assert.equal(0, r.code, r.err)
    local summary = cjson.decode(r.out)
    r = h.apr(string.format("convert %s -o %s --json", apr_path, back))
    assert.equal(0, r.code, r.err)
    local back_summary = cjson.decode(r.out)
    digests[src] = digests[src] or sha256(src)
    local want = digests[src]
    assert.is_true(same_bytes(src, back), src .. " via " .. codec)
    assert.equal(want, back_summary.sha256)
    assert.is_true(back_summary.matches_source)
    assert.equal(want, summary.source_sha256)
    os.remove(apr_path)
    os.remove(back)
    os.remove(back .. ".sha256")  -- the export's digest, kept as a sidecar
    return summary
end

describe("apr convert", function()
    for _, name in ipairs(FIXTURES) do
        it("gives back " .. name .. " byte for byte with every codec", function()
            local dir = h.tmpdir()
            for _, codec in ipairs({ "none", "lz4", "zstd" }) do
                round_trip("tests/fixtures/models/" .. name, dir, codec)
            end
            assert.equal("", ls(dir))  -- no temporary file left behind
            h.rmtree(dir)
        end)
    end

    it("gives back the default model byte for byte with every codec", function()
        if not h.exists(DEFAULT) then return pending("run make model") end
        local dir = h.tmpdir()
        for _, codec in ipairs({ "none", "lz4", "zstd" }) do
            local s = round_trip(DEFAULT, dir, codec)
            assert.equal(291, s.tensors)
            if codec == "zstd" then
                -- real quantized weights: a few percent, not the spec's 15-30%
                assert.is_true(s.stored_bytes < 0.99 * s.tensor_bytes, s.stored_bytes)
                assert.is_true(s.stored_bytes > 0.80 * s.tensor_bytes, s.stored_bytes)
            end
        end
        h.rmtree(dir)
    end)

    it("compresses float weights with zstd and byte planes, and says how much", function()
        local dir = h.tmpdir()
        local r = h.apr("convert tests/fixtures/models/tiny-f16.gguf -o " .. dir ..
            "/f.apr --compression zstd --level 9 --verify")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("APR v2, zstd level 9", 1, true), r.out)
        assert.truthy(r.out:find("F16 ", 1, true), r.out)
        assert.truthy(r.out:find("verified: %d+ chunks match their checksums"), r.out)
        local s = cjson.decode(h.apr("convert tests/fixtures/models/tiny-f16.gguf -o " .. dir ..
            "/g.apr --compression zstd --json").out)
        assert.is_true(s.stored_bytes < 0.95 * s.tensor_bytes)
        assert.equal("F16", s.by_type[1].type)
        h.rmtree(dir)
    end)

    it("refuses options that do not fit the direction, and the input as output", function()
        local dir = h.tmpdir()
        local r = h.apr("convert tests/fixtures/models/tiny-q8_0.gguf -o " .. dir .. "/x.gguf")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("name the output .apr", 1, true), r.err)
        r = h.apr("convert tests/fixtures/models/tiny-q8_0.gguf -o " .. dir .. "/l.apr --level 15")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("--level for lz4 is 1 to 12, got 15", 1, true), r.err)
        r = h.apr("convert tests/fixtures/models/tiny-q8_0.gguf -o " .. dir .. "/l.apr --compression none --level 3")
        assert.equal(2, r.code)
        r = h.apr("convert tests/fixtures/models/tiny-q8_0.gguf")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("--output is required", 1, true), r.err)
        assert.equal(0, h.apr("convert tests/fixtures/models/tiny-q8_0.gguf -o " .. dir .. "/a.apr").code)
        r = h.apr("convert " .. dir .. "/a.apr -o " .. dir .. "/b.gguf --compression zstd")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("--compression applies to GGUF -> APR", 1, true), r.err)
        os.execute("ln -s a.apr " .. dir .. "/link.bin")
        r = h.apr("convert " .. dir .. "/a.apr -o " .. dir .. "/link.bin")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("is the input file itself", 1, true), r.err)
        r = h.apr("convert README.md -o " .. dir .. "/r.apr")
        assert.equal(1, r.code)
        assert.equal(1, select(2, r.err:gsub("\n", "")), r.err)
        r = h.apr("convert " .. dir .. "/none.gguf -o " .. dir .. "/r.apr")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("No such file", 1, true), r.err)
        h.rmtree(dir)
    end)

    it("fails on a corrupt chunk with one line naming it, writing nothing", function()
        local dir = h.tmpdir()
        assert.equal(0, h.apr("convert tests/fixtures/models/tiny-q8_0.gguf -o " .. dir ..
            "/a.apr --compression none").code)
        -- flip one byte inside token_embd.weight's data
        local at
        for _, t in ipairs(assert(require("apr").open(dir .. "/a.apr")):tensors()) do
            if t.name == "token_embd.weight" then at = t.file_offset + 1000 end
        end
        local f = assert(io.open(dir .. "/a.apr", "r+b"))
        local data = f:read("*a")
        f:seek("set", at)
        f:write(string.char((data:byte(at + 1) + 1) % 256))
        f:close()
        local r = h.apr("convert " .. dir .. "/a.apr -o " .. dir .. "/b.gguf")
        assert.equal(1, r.code)
        assert.truthy(r.err:match("^apr convert: [^\n]*a%.apr: tensor '[^']+' chunk %d+ of %d+: checksum mismatch[^\n]*\n$"),
            r.err)
        assert.is_false(h.exists(dir .. "/b.gguf"))
        assert.equal("a.apr\n", ls(dir))
        r = h.apr("verify " .. dir .. "/a.apr")
        assert.equal(1, r.code)
        assert.truthy(r.out:find("FAIL  chunks", 1, true), r.out)
        h.rmtree(dir)
    end)

    it("leaves nothing under OUT when Ctrl+C stops it", function()
        if not h.exists(DEFAULT) then return pending("run make model (a conversion long enough to interrupt)") end
        local dir = h.tmpdir()
        local out = dir .. "/m.apr"
        -- one thread and zstd level 19: seconds of work, interrupted after the start
        local cmd = string.format("%s convert %s -o %s --compression zstd --level 19 --threads 1 >%s/out 2>%s/err & " ..
            "pid=$!; sleep 1.5; kill -INT $pid; wait $pid; echo $?", h.apr_bin, DEFAULT, out, dir, dir)
        local p = assert(io.popen(cmd))
        local code = tonumber(p:read("*a"))
        p:close()
        assert.equal(130, code)
        assert.truthy(h.read_file(dir .. "/err"):find("interrupted; " .. out .. " was not written", 1, true))
        assert.equal("err\nout\n", ls(dir))
        h.rmtree(dir)
    end)
    -- A job that left its input mapped until garbage collection kept a
    -- removed 20 GB model's blocks on the disk (bench/apr_convert.lua
    -- --back-over-source ran out of space on the GPU machine).
    it("unmaps its input and output before returning (the library, both directions, and verify)", function()
        local convert = require "apr.convert"
        local dir = h.tmpdir()
        local src, a, back = dir .. "/in.gguf", dir .. "/m.apr", dir .. "/back.gguf"
        assert.equal(0, os.execute("cp tests/fixtures/models/tiny-q8_0.gguf " .. src))
        collectgarbage("stop")  -- a finalizer run in between would hide a leak
        finally(function() collectgarbage("restart") end)
        local function mapped(path)
            local f = assert(io.open("/proc/self/maps"))
            local maps = f:read("*a")
            f:close()
            return maps:find(path, 1, true) ~= nil
        end
        local ok, err = convert.run(src, a, { compression = "lz4", sidecar = false })
        assert.is_truthy(ok, err)
        assert.is_false(mapped(src))
        assert.is_false(mapped(a))
        ok, err = convert.verify(a)
        assert.is_truthy(ok, err)
        assert.is_false(mapped(a))
        ok, err = convert.run(a, back, { sidecar = false })
        assert.is_truthy(ok, err)
        assert.is_false(mapped(a))
        assert.is_false(mapped(back))
    end)
end)
