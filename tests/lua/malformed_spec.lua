-- malformed_spec.lua — the malformed GGUF corpus (tests/malformed/gen.py).
-- A file whose GGUF structure is broken makes `apr info`, `verify` and
-- `pass` exit 1 with one line that names the file and holds the fragment
-- EXPECTED lists for it; a sound file that is no model apr can run (kind
-- "model") is described by info, and refused by verify and pass with the
-- same one-line message (verify runs the loader's checks, issue 16).
-- `make test-asan` runs the same corpus (tests/malformed/run.sh) under
-- AddressSanitizer.
local h = require "tests.lua.helpers"

local DIR = "tests/fixtures/malformed/"

local function expected()
    local list = {}
    for line in io.lines(DIR .. "EXPECTED") do
        local name, kind, fragment = line:match("^([^#][^\t]*)\t([^\t]+)\t(.*)$")
        if name then list[#list + 1] = { name = name, kind = kind, fragment = fragment } end
    end
    return list
end

local function quote(s) return (s:gsub("%p", "%%%0")) end

-- The command failed with one line: "apr CMD: FILE: ..." holding fragment.
local function one_line(r, cmd, name, fragment)
    assert.equal(1, r.code, r.err)
    assert.truthy(r.err:match("^apr " .. cmd .. ": " .. quote(DIR .. name) .. ": [^\n]+\n$"), r.err)
    assert.truthy(r.err:find(fragment, 1, true), r.err .. " lacks " .. fragment)
end

describe("the malformed GGUF corpus", function()
    it("has at least 30 files of each kind, each listed with its expected message", function()
        local p = io.popen("ls " .. DIR .. "*.gguf | wc -l")
        local n = tonumber(p:read("*a"))
        p:close()
        local kinds = {}
        for _, c in ipairs(expected()) do kinds[c.kind] = (kinds[c.kind] or 0) + 1 end
        assert.is_true(kinds.file >= 30, kinds.file)
        assert.is_true(kinds.model >= 20, kinds.model)
        assert.equal(1, kinds.ok)
        assert.equal(n, #expected())
    end)

    for _, case in ipairs(expected()) do
        local pass = "pass " .. DIR .. case.name .. " --prompt hi --raw --max-tokens 1"
        if case.kind == "file" then
            it(case.name .. " fails info, verify and pass with one line naming the problem", function()
                local r = h.apr("info " .. DIR .. case.name)
                assert.equal("", r.out)
                one_line(r, "info", case.name, case.fragment)
                r = h.apr("verify --deep " .. DIR .. case.name)
                assert.equal("", r.out)
                one_line(r, "verify", case.name, case.fragment)
                one_line(h.apr(pass), "pass", case.name, case.fragment)
            end)
        elseif case.kind == "model" then
            it(case.name .. ": info describes it, verify and pass refuse it with the loader's words", function()
                local r = h.apr("info --no-hash " .. DIR .. case.name)
                assert.equal(0, r.code, r.err)
                r = h.apr("verify --deep " .. DIR .. case.name)
                one_line(r, "verify", case.name, case.fragment)
                local line = r.out:match("\nFAIL  model        ([^\n]*)")
                assert.truthy(line and line:find(case.fragment, 1, true), r.out)
                assert.is_nil(r.out:find("internal error", 1, true))
                one_line(h.apr(pass), "pass", case.name, case.fragment)
            end)
        else
            it(case.name .. " is sound: info, verify --deep and pass succeed", function()
                assert.equal(0, h.apr("info --no-hash " .. DIR .. case.name).code)
                local r = h.apr("verify --deep " .. DIR .. case.name)
                assert.equal(0, r.code, r.out .. r.err)
                assert.truthy(r.out:find("\nok    model ", 1, true), r.out)
                r = h.apr(pass)
                assert.equal(0, r.code, r.err)
                assert.equal("", r.err)
            end)
        end
    end

    -- Issue 16: open() of a FIFO waited for a writer forever, in every
    -- command that opens a model. `timeout` turns a hang into exit 124.
    it("a FIFO, a directory or a device as the model: one line, exit 1, at once", function()
        local dir = h.tmpdir()
        local fifo = dir .. "/model.gguf"
        assert.equal(0, os.execute("mkfifo " .. fifo))
        local cases = { { fifo, "a FIFO" }, { dir, "a directory" }, { "/dev/null", "a character device" } }
        for _, cmd in ipairs({ "info", "inspect", "inspect --tensors", "verify", "verify --deep --checksum",
                               "pass --prompt hi --max-tokens 1" }) do
            for _, c in ipairs(cases) do
                local r = h.apr_timeout(10, cmd .. " " .. c[1])
                local verb = cmd:match("^%S+")
                assert.equal(1, r.code, cmd .. " " .. c[1] .. ": " .. r.err)
                assert.equal(string.format("apr %s: %s: not a regular file (%s)\n", verb, c[1], c[2]), r.err)
            end
        end
        h.rmtree(dir)
    end)

    it("is what gen.py writes (regenerate and commit after changing it)", function()
        local dir = h.tmpdir()
        local p = io.popen("python3 tests/malformed/gen.py " .. dir .. " 2>&1 && diff -r " .. dir .. " " .. DIR ..
            " && echo same")
        local out = p:read("*a")
        p:close()
        h.rmtree(dir)
        if out:find("No such file or directory") and out:find("python3") then pending("no python3") return end
        assert.truthy(out:find("same\n$"), out)
    end)
end)
