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
