-- malformed_apr_spec.lua — every file of the malformed APR corpus
-- (tests/malformed/gen_apr.lua) makes `apr convert FILE --output OUT.gguf`
-- exit 1 with one line naming the file and containing the fragment EXPECTED
-- lists for it, and write nothing; `apr verify` fails on each with one line
-- too, and `apr info` on each whose structure is broken. `make test-asan` runs the convert half under
-- AddressSanitizer (tests/malformed/run.sh).
local h = require "tests.lua.helpers"

local DIR = "tests/fixtures/malformed-apr/"

local function expected()
    local list = {}
    for line in io.lines(DIR .. "EXPECTED") do
        local name, fragment = line:match("^([^#][^\t]*)\t(.+)$")
        if name then list[#list + 1] = { name = name, fragment = fragment } end
    end
    return list
end

local function quoted(s) return (s:gsub("%p", "%%%0")) end

describe("the malformed APR corpus", function()
    it("has at least 30 files, each listed with its expected message", function()
        local p = io.popen("ls " .. DIR .. "*.apr | wc -l")
        local n = tonumber(p:read("*a"))
        p:close()
        assert.is_true(n >= 30, n)
        assert.equal(n, #expected())
    end)

    local out = h.tmpdir()
    for _, case in ipairs(expected()) do
        it(case.name .. " fails with one line naming the problem, writing nothing", function()
            local r = h.apr("convert " .. DIR .. case.name .. " --output " .. out .. "/back.gguf")
            assert.equal(1, r.code, r.err)
            assert.equal("", r.out)
            assert.truthy(r.err:match("^apr convert: [^\n]*" .. quoted(case.name) .. "[^\n]*\n$"), r.err)
            assert.truthy(r.err:find(case.fragment, 1, true), r.err .. " lacks " .. case.fragment)
            local p = io.popen("ls -A " .. out)
            assert.equal("", p:read("*a"))
            p:close()
            -- verify reads every chunk too: it fails, with one line on stderr
            r = h.apr("verify " .. DIR .. case.name)
            assert.equal(1, r.code, r.err)
            assert.equal(1, select(2, r.err:gsub("\n", "")), r.err)
            -- info only opens (chunks stay unread): a broken structure is one
            -- line and exit 1, broken chunk bytes go unnoticed by it
            r = h.apr("info --no-hash " .. DIR .. case.name)
            assert.truthy(r.code == 0 or (r.code == 1 and select(2, r.err:gsub("\n", "")) == 1), r.err)
        end)
    end

    it("is what gen_apr.lua writes (regenerate and commit after changing it)", function()
        local dir = h.tmpdir()
        local p = io.popen(h.apr_bin .. " run tests/malformed/gen_apr.lua " .. dir .. " >/dev/null 2>&1 && diff -r " ..
            dir .. " " .. DIR .. " && echo same")
        local diff = p:read("*a")
        p:close()
        h.rmtree(dir)
        assert.truthy(diff:find("same\n$"), diff)
    end)
end)
