-- malformed_spec.lua — every file of the malformed GGUF corpus
-- (tests/malformed/gen.py) makes `apr info` exit 1 with one line that names
-- the file and contains the fragment EXPECTED lists for it. `make test-asan`
-- runs the same corpus (tests/malformed/run.sh) under AddressSanitizer.
local h = require "tests.lua.helpers"

local DIR = "tests/fixtures/malformed/"

local function expected()
    local list = {}
    for line in io.lines(DIR .. "EXPECTED") do
        local name, fragment = line:match("^([^#][^\t]*)\t(.+)$")
        if name then list[#list + 1] = { name = name, fragment = fragment } end
    end
    return list
end

describe("the malformed GGUF corpus", function()
    it("has at least 30 files, each listed with its expected message", function()
        local p = io.popen("ls " .. DIR .. "*.gguf | wc -l")
        local n = tonumber(p:read("*a"))
        p:close()
        assert.is_true(n >= 30, n)
        assert.equal(n, #expected())
    end)

    for _, case in ipairs(expected()) do
        it(case.name .. " fails with one line naming the problem", function()
            local r = h.apr("info " .. DIR .. case.name)
            assert.equal(1, r.code, r.err)
            assert.equal("", r.out)
            assert.truthy(r.err:match("^apr info: " .. DIR:gsub("%p", "%%%0") .. case.name:gsub("%p", "%%%0") ..
                ": [^\n]+\n$"), r.err)
            assert.truthy(r.err:find(case.fragment, 1, true), r.err .. " lacks " .. case.fragment)
        end)
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
