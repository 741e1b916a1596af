-- pull_spec.lua — apr pull against the test hub (tests/lua/apr/hub/
-- test_hub.py) on 127.0.0.1: the hub protocol, the cache layout, references
-- resolved offline by every command, --output, split models, auth, errors.
-- Faults (drops, ranges, changes, corruption, retries, kills, a full disk)
-- are in download_spec.lua.
local cjson = require "cjson"
local hub_helper = require "tests.lua.apr.hub.hub_helper"
local h = require "tests.lua.helpers"

local Q4 = "tests/fixtures/models/tiny-q4_k_m.gguf"
local Q8 = "tests/fixtures/models/tiny-q8_0.gguf"
local F16 = "tests/fixtures/models/tiny-f16.gguf"
local Q4_SHA = hub_helper.sha256(Q4)
local Q8_SHA = hub_helper.sha256(Q8)

local hub

local function lstat_link(path)
    return (hub_helper.sh("readlink '" .. path .. "'"):gsub("%s+$", ""))
end

local function file_exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

describe("apr pull", function()
    setup(function()
        hub = hub_helper.start({
            page_size = 2,   -- every listing takes several pages (Link: rel="next")
            repos = {
                ["bartowski/Tiny-GGUF"] = { files = {
                    ["Tiny-Q4_K_M.gguf"] = Q4, ["Tiny-Q8_0.gguf"] = Q8, ["mmproj-Tiny-f16.gguf"] = F16,
                    ["README.md"] = "README.md",
                } },
                ["qwen/Split-GGUF"] = { files = {
                    ["big-q4_k_m-00001-of-00003.gguf"] = { bytes = 300000, seed = 1 },
                    ["big-q4_k_m-00002-of-00003.gguf"] = { bytes = 300000, seed = 2 },
                    ["big-q4_k_m-00003-of-00003.gguf"] = { bytes = 1000, seed = 3 },
                    ["Q8_0/big-Q8_0-00001-of-00002.gguf"] = { bytes = 5000, seed = 4 },
                    ["Q8_0/big-Q8_0-00002-of-00002.gguf"] = { bytes = 5000, seed = 5 },
                } },
                ["private/Secret-GGUF"] = { files = { ["Secret-Q4_K_M.gguf"] = Q4 }, config = { private = true } },
                ["gated/Gate-GGUF"] = { files = { ["Gate-Q4_K_M.gguf"] = Q4 }, config = { gated = true, allowed = { "hf_ok" } } },
                ["old/Renamed-GGUF"] = { config = { moved_to = "bartowski/Tiny-GGUF" } },
            },
        })
    end)
    teardown(function() hub.stop() end)

    it("pulls a quantization into the hub cache, laid out as huggingface_hub lays it out", function()
        hub.reset()
        local r = hub.apr("pull bartowski/Tiny-GGUF --quant q4_k_m")
        assert.equal(0, r.code, r.err)
        local repo = hub.cache .. "/models--bartowski--Tiny-GGUF"
        local commit = h.read_file(repo .. "/refs/main")
        assert.truthy(commit:match("^%x+$") and #commit == 40, "refs/main: " .. commit)
        local snap = repo .. "/snapshots/" .. commit .. "/Tiny-Q4_K_M.gguf"
        assert.equal(snap .. "\n", r.out)
        assert.equal("../../blobs/" .. Q4_SHA, lstat_link(snap))   -- relative, named by the LFS sha256
        assert.equal(Q4_SHA, hub_helper.sha256(snap))
        assert.falsy(file_exists(repo .. "/blobs/" .. Q4_SHA .. ".incomplete"))
        assert.falsy(file_exists(repo .. "/blobs/" .. Q4_SHA .. ".incomplete.resume"))
        assert.truthy(file_exists(hub.cache .. "/.locks/models--bartowski--Tiny-GGUF/" .. Q4_SHA .. ".lock"))
        assert.truthy(file_exists(hub.cache .. "/CACHEDIR.TAG"))
        assert.truthy(r.err:find("SHA-256 verified", 1, true), r.err)
        -- The listing came in pages, and the token-less requests carried no auth.
        local paged, cdn = false, 0
        for _, q in ipairs(hub.stats().requests) do
            if q.path:find("/tree/main", 1, true) and q.path:find("cursor=", 1, true) then paged = true end
            if q.path:find("^/cdn/") then cdn = cdn + 1 end
        end
        assert.is_true(paged)
        assert.truthy(cdn >= 1)
        assert.equal(io.open(Q4, "rb"):seek("end"), hub.stats().bytes["bartowski/Tiny-GGUF/Tiny-Q4_K_M.gguf"])
    end)

    it("then every command finds ORG/REPO:QUANT in the cache without the network", function()
        hub.reset()
        local offline = "HF_HUB_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:9"
        local r = hub.apr("info bartowski/Tiny-GGUF:Q4_K_M", offline)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.out:find("Quantization: Q4_K_M\n", 1, true))
        assert.truthy(r.out:find("SHA256: " .. Q4_SHA .. "\n", 1, true), r.out)  -- the digest pull verified
        r = hub.apr("verify --checksum bartowski/Tiny-GGUF:q4_k_m", offline)
        assert.equal(0, r.code, r.out .. r.err)
        assert.truthy(r.out:find("matches the recorded digest", 1, true), r.out)
        r = hub.apr("inspect hf.co/bartowski/Tiny-GGUF:Q4_K_M", offline)
        assert.equal(0, r.code, r.err)
        r = hub.apr("pass --max-tokens 2 --raw --prompt hi bartowski/Tiny-GGUF:Q4_K_M", offline)
        assert.equal(0, r.code, r.err)
        local script = os.tmpname()
        local f = assert(io.open(script, "wb"))
        f:write('local apr = require "apr"; print(assert(apr.open(arg[1])).metadata["general.name"])')
        f:close()
        r = hub.apr("run " .. script .. " bartowski/Tiny-GGUF:Q4_K_M", offline)
        os.remove(script)
        assert.equal("synthetic-qwen2-tiny-q4_k_m\n", r.out, r.err)
        r = hub.apr("pull bartowski/Tiny-GGUF:Q4_K_M", offline)
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("already in the cache", 1, true))
        assert.equal(0, #hub.stats().requests)   -- nothing reached the hub
        -- Not pulled: a clear error that says how to get it.
        r = hub.apr("info bartowski/Tiny-GGUF:Q5_K_M", offline)
        assert.equal(1, r.code)
        assert.truthy(r.err:find("not in the Hugging Face cache", 1, true), r.err)
        assert.truthy(r.err:find("apr pull bartowski/Tiny-GGUF --quant Q5_K_M", 1, true), r.err)
        r = hub.apr("pull bartowski/Tiny-GGUF:Q8_0", offline)
        assert.equal(1, r.code)
        assert.truthy(r.err:find("HF_HUB_OFFLINE", 1, true), r.err)
        -- A missing file path is still a missing file, not a hub question.
        r = hub.apr("info no/such-file.gguf", offline)
        assert.equal(1, r.code)
        assert.truthy(r.err:find("No such file", 1, true), r.err)
    end)

    it("--output links the file out of the cache, with its digest beside it", function()
        local dir = h.tmpdir()
        local r = hub.apr("pull bartowski/Tiny-GGUF:Q8_0 --output " .. dir .. "/models/tiny.gguf")
        assert.equal(0, r.code, r.err)
        assert.equal(dir .. "/models/tiny.gguf\n", r.out)
        assert.equal(Q8_SHA, hub_helper.sha256(dir .. "/models/tiny.gguf"))
        local ino = function(p) return hub_helper.sh("stat -L -c %i '" .. p .. "'") end
        assert.equal(ino(hub.cache .. "/models--bartowski--Tiny-GGUF/blobs/" .. Q8_SHA), ino(dir .. "/models/tiny.gguf"))
        assert.truthy(h.read_file(dir .. "/models/tiny.gguf.sha256"):find("^" .. Q8_SHA))
        r = hub.apr("info " .. dir .. "/models/tiny.gguf")
        assert.truthy(r.out:find("SHA256: " .. Q8_SHA, 1, true))
        r = hub.apr("verify --checksum " .. dir .. "/models/tiny.gguf")
        assert.equal(0, r.code, r.out)
        h.rmtree(dir)
    end)

    it("fetches every part of a split model and names the set by its first part", function()
        local r = hub.apr("pull qwen/Split-GGUF --quant Q4_K_M")
        assert.equal(0, r.code, r.err)
        local first = r.out:gsub("\n$", "")
        assert.truthy(first:find("/big%-q4_k_m%-00001%-of%-00003%.gguf$"), first)
        for i = 1, 3 do
            local part = first:gsub("00001%-of", string.format("%05d-of", i))
            assert.equal(hub_helper.sha256(hub.root .. "/qwen/Split-GGUF/big-q4_k_m-" .. string.format("%05d", i) ..
                "-of-00003.gguf"), hub_helper.sha256(part))
        end
        -- A set in a folder, and --output into a folder.
        local dir = h.tmpdir()
        r = hub.apr("pull qwen/Split-GGUF:q8_0 --output " .. dir .. "/")
        assert.equal(0, r.code, r.err)
        assert.equal(dir .. "/big-Q8_0-00001-of-00002.gguf\n", r.out)
        assert.truthy(file_exists(dir .. "/big-Q8_0-00002-of-00002.gguf"))
        -- The reference resolves offline to the first part.
        local script = dir .. "/resolve.lua"
        local f = assert(io.open(script, "wb"))
        f:write('print((require("apr.model_path").resolve(arg[1])))')
        f:close()
        r = hub.apr("run " .. script .. " qwen/Split-GGUF:Q8_0", "HF_HUB_OFFLINE=1")
        assert.truthy(r.out:find("/snapshots/%x+/Q8_0/big%-Q8_0%-00001%-of%-00002%.gguf\n$"), r.out .. r.err)
        h.rmtree(dir)
    end)

    it("--json prints a summary; --quiet prints only the path", function()
        local r = hub.apr("pull bartowski/Tiny-GGUF --quant Q4_K_M --json --quiet")
        assert.equal(0, r.code, r.err)
        assert.equal("", r.err)
        local s = cjson.decode(r.out)
        assert.equal("bartowski/Tiny-GGUF", s.repo)
        assert.equal("main", s.revision)
        assert.equal(40, #s.commit)
        assert.equal(1, #s.files)
        assert.equal(Q4_SHA, s.files[1].sha256)
        assert.equal(Q4_SHA, s.files[1].expected_sha256)
        assert.is_true(s.files[1].cached)
        assert.equal(s.path, s.files[1].local_path)
    end)

    it("picks files by quantization, and says what there is when it cannot", function()
        local r = hub.apr("pull bartowski/Tiny-GGUF --quant Q5_K_M")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("no GGUF file for quantization Q5_K_M (available: Q4_K_M, Q8_0)", 1, true), r.err)
        r = hub.apr("pull bartowski/Tiny-GGUF")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("choose one with --quant", 1, true), r.err)
        r = hub.apr("pull bartowski/Tiny-GGUF --file README.md --quiet")
        assert.equal(0, r.code, r.err)
        assert.equal(h.read_file("README.md"), h.read_file((r.out:gsub("\n$", ""))))
    end)

    it("follows a renamed repository's relative redirect", function()
        local r = hub.apr("pull old/Renamed-GGUF:Q8_0 --quiet")
        assert.equal(0, r.code, r.err)
        assert.equal(Q8_SHA, hub_helper.sha256((r.out:gsub("\n$", ""))))
    end)

    it("sends HF_TOKEN to the hub only, and explains 401, 403 and 404", function()
        local r = hub.apr("pull private/Secret-GGUF:Q4_K_M")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("set HF_TOKEN", 1, true), r.err)
        hub.reset()
        r = hub.apr("pull private/Secret-GGUF:Q4_K_M --quiet", "HF_TOKEN=hf_test_token")
        assert.equal(0, r.code, r.err)
        for _, q in ipairs(hub.stats().requests) do
            if q.path:find("^/cdn/") then
                assert.is_false(q.auth, "the token went to the CDN")
            else
                assert.is_true(q.auth, q.path)
            end
        end
        r = hub.apr("pull gated/Gate-GGUF:Q4_K_M")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("gated", 1, true), r.err)
        r = hub.apr("pull gated/Gate-GGUF:Q4_K_M", "HF_TOKEN=hf_not_allowed")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("HTTP 403", 1, true), r.err)
        r = hub.apr("pull gated/Gate-GGUF:Q4_K_M --quiet", "HF_TOKEN=hf_ok")
        assert.equal(0, r.code, r.err)
        r = hub.apr("pull nobody/Nothing-GGUF:Q4_K_M")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("repository not found", 1, true), r.err)
        r = hub.apr("pull bartowski/Tiny-GGUF:Q4_K_M --revision v9")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("no revision 'v9'", 1, true), r.err)
    end)

    it("rejects what is not a repository or says a thing twice (exit 2)", function()
        for _, args in ipairs({ "pull justaname", "pull a/b:Q4_K_M --quant Q8_0", "pull a/b --quant Q4 --file x.gguf",
                                "pull a/b --connections 0", "pull" }) do
            local r = hub.apr(args)
            assert.equal(2, r.code, args .. ": " .. r.err)
        end
    end)

    it("fails clearly when the hub cannot be reached", function()
        local r = hub_helper.run(hub.env() .. " HF_ENDPOINT=http://127.0.0.1:9 " .. h.apr_bin ..
            " pull bartowski/Tiny-GGUF:Q8_0 --retries 1")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("127.0.0.1", 1, true) and r.err:find("gave up", 1, true), r.err)
    end)
end)
