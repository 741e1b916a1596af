-- repl_spec.lua — `apr repl`: expressions and statements from piped input,
-- errors with the user's traceback only, and Ctrl+C on a terminal.
local h = require "tests.lua.helpers"

describe("apr repl", function()
    it("prints values, and errors with only the user's frames in the traceback", function()
        local r = h.apr("repl", 'function f() error("boom") end\nf()\nerror("plain")\nerror({ a = 1 })\n1 + 1\n')
        assert.equal(0, r.code)
        assert.equal("2\n", r.out)
        assert.truthy(r.err:find("stdin:1: boom", 1, true), r.err)
        assert.truthy(r.err:find("in function <stdin:1>", 1, true) or r.err:find("in function 'f'", 1, true), r.err)
        assert.truthy(r.err:find("plain", 1, true), r.err)
        assert.truthy(r.err:find("{a = 1}", 1, true), r.err)
        -- apr's own frames are not the user's business.
        assert.falsy(r.err:find("repl.lua", 1, true), r.err)
        assert.falsy(r.err:find("cli.lua", 1, true), r.err)
        assert.falsy(r.err:find("xpcall", 1, true), r.err)
        assert.falsy(r.err:find("builtin#", 1, true), r.err)
    end)
end)

describe("apr repl on a terminal", function()
    local terminal = require "tests.lua.terminal"
    local ok, why = terminal.available()
    if not ok then
        pending("Ctrl+C at the prompt: " .. why)
        return
    end

    it("drops the input on Ctrl+C, says how to leave, and leaves (exit 0) on a second one", function()
        local dir = h.tmpdir()
        local t = terminal.start(string.format("HOME=%s XDG_STATE_HOME=%s %s repl", dir, dir, h.apr_bin))
        local ok2, err = pcall(function()
            assert.truthy(t:wait_for("> "), t:screen())
            t:keys("function g(", "Enter")  -- an unfinished statement: a continuation prompt
            assert.truthy(t:wait_for(">> "), t:screen())
            t:keys("C-c")
            assert.truthy(t:wait_for("(press Ctrl+C again or Ctrl+D to leave)", 10), t:screen())
            t:keys("40 + 2", "Enter")  -- the unfinished input is gone: this parses alone
            assert.truthy(t:wait_for("42", 10), t:screen())
            t:keys("C-c")
            local screen
            for _ = 1, 100 do  -- the second hint, then the press that leaves
                screen = t:screen()
                if select(2, screen:gsub("press Ctrl%+C again", "")) == 2 then break end
                os.execute("sleep 0.05")
            end
            t:keys("C-c")
            assert.truthy(t:wait_for("[exit 0]", 10), t:screen())
        end)
        t:close()
        h.rmtree(dir)
        assert(ok2, err)
    end)
end)
