-- cli_spec.lua — the apr executable: dispatch, help, version, exit codes.
local h = require "tests.lua.helpers"

-- `apr run` of a script with this source; the result of h.apr and the
-- script's path (removed by then).
local function run_script(source, args)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(source)
    f:close()
    local r = h.apr("run " .. path .. (args and " " .. args or ""))
    os.remove(path)
    return r, path
end

describe("apr cli", function()
    it("lists exactly the commands that exist: one per lua/apr/cmd/NAME.lua", function()
        local files = {}
        local p = assert(io.popen("ls lua/apr/cmd"))
        for name in p:lines() do files[#files + 1] = assert(name:match("^(.+)%.lua$"), name) end
        p:close()
        local listed = {}
        for i, name in ipairs(require("apr.cli").commands) do listed[i] = name end
        table.sort(files)
        table.sort(listed)
        assert.same(files, listed)
    end)

    it("lists every command in help, each with a summary", function()
        local r = h.apr("help")
        assert.equal(0, r.code)
        for _, name in ipairs(require("apr.cli").commands) do
            assert.truthy(r.out:find("\n  " .. name .. " +%S"), name)
        end
    end)

    it("gives --help with a usage line and examples for every command", function()
        for _, name in ipairs(require("apr.cli").commands) do
            local r = h.apr(name .. " --help")
            assert.equal(0, r.code, name)
            assert.truthy(r.out:match("^usage: apr " .. name), name)
            local examples = r.out:match("\nexamples:\n(.*)$")
            assert.truthy(examples and examples:find("apr " .. name, 1, true), name .. " has no examples")
        end
    end)

    it("exits 2 with one line for an unknown command", function()
        local r = h.apr("frobnicate")
        assert.equal(2, r.code)
        assert.equal("apr: unknown command 'frobnicate' (see 'apr help')\n", r.err)
    end)

    it("exits 2 for an unknown option, naming it", function()
        local r = h.apr("version --bogus")
        assert.equal(2, r.code)
        assert.truthy(r.err:find("unknown option '--bogus'", 1, true))
    end)

    it("reports version, revision, CUDA and compiler", function()
        local r = h.apr("version --json")
        assert.equal(0, r.code)
        local v = require("cjson").decode(r.out)
        assert.equal("0.1.0", v.version)
        assert.is_string(v.git_revision)
        assert.is_boolean(v.cuda)
        assert.truthy(v.compiler:match("^gcc") or v.compiler:match("^clang"))
    end)

    it("runs a script with arg set and returns its exit code", function()
        local r = run_script('local apr = require "apr"\n' ..
            'io.write(arg[0] == ... and "same" or "diff", " ", arg[1], " ", arg[2], " ", apr.version)\nreturn 3\n', "a --b")
        assert.equal(3, r.code)
        assert.equal("diff a --b 0.1.0", r.out)
    end)

    it("closes the libuv handles a script leaves open before it exits", function()
        local r = run_script('local uv = require "luv"\nuv.new_timer():start(60000, 0, function() end)\n' ..
            'local t = uv.new_tcp()\nt:bind("127.0.0.1", 0)\nt:close()\nprint("done")\n')
        assert.same({ 0, "done\n", "" }, { r.code, r.out, r.err })
    end)

    it("exits 1 on a script's error with its traceback, not apr's own frames", function()
        local r, path = run_script('local function f() error("boom") end\nf()\n')
        assert.equal(1, r.code)
        assert.equal(path .. ":1: boom\nstack traceback:\n\t[C]: in function 'error'\n\t" ..
            path .. ":1: in function 'f'\n\t" .. path .. ":2: in main chunk\n", r.err)
    end)

    it("exits 1 with the message when a script fails to load", function()
        local r = h.apr("run /nonexistent/x.lua")
        assert.equal(1, r.code)
        assert.truthy(r.err:find("/nonexistent/x.lua", 1, true))
    end)

    it("evaluates expressions in the repl when input is piped", function()
        local r = h.apr("repl", "x = 20\nx + 22\n{a = 1, 'b'}\nfor i=1,2 do\nprint(i)\nend\nerror('boom')\n")
        assert.equal(0, r.code)
        assert.equal('42\n{"b", a = 1}\n1\n2\n', r.out)
        assert.truthy(r.err:find("boom", 1, true))
    end)
end)
