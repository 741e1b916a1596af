-- await_spec.lua — apr/await.lua: a coroutine waits for a callback and gets
-- its arguments, whether the callback runs later or at once; outside a
-- coroutine it is an error naming where it was expected.
local await = require "apr.await"

describe("apr.await", function()
    local function resume(co, ...) assert(coroutine.resume(co, ...)) end

    it("returns the callback's arguments when it runs later", function()
        local saved, got
        local co = coroutine.create(function()
            got = { await(function(cb) saved = cb end, resume) }
        end)
        resume(co)
        assert.equal("suspended", coroutine.status(co))
        saved(1, nil, "three")
        assert.equal("dead", coroutine.status(co))
        assert.same({ 1, nil, "three" }, got)
        assert.equal(3, select("#", unpack(got, 1, 3)))
    end)

    it("returns at once, without yielding, when the callback runs before subscribe returns", function()
        local got
        local co = coroutine.create(function()
            got = { await(function(cb) cb("now", nil) end, resume) }
            return "finished"
        end)
        local ok, r = coroutine.resume(co)
        assert.is_true(ok)
        assert.equal("finished", r)
        assert.same({ "now", nil }, got)
    end)

    it("takes only the first call of the callback", function()
        local saved, got
        local co = coroutine.create(function()
            got = { await(function(cb) saved = cb end, resume) }
            coroutine.yield()
        end)
        resume(co)
        saved("first")
        saved("second")  -- the coroutine waits elsewhere now: not resumed
        assert.same({ "first" }, got)
        assert.equal("suspended", coroutine.status(co))
    end)

    it("is an error outside a coroutine", function()
        local ok, err = pcall(await, function() end, resume, "a task")
        assert.is_false(ok)
        assert.truthy(tostring(err):find("await outside a task", 1, true))
    end)
end)
