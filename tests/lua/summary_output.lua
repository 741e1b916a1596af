-- summary_output.lua — busted output handler: one line per failure or skip,
-- then "Lua specs: N passed, N failed, N skipped", also written to the counts
-- file the test runner gives (APR_TEST_COUNTS) for scripts/test_summary.sh.
return function(options)
    local busted = require "busted"
    local handler = require("busted.outputHandlers.base")()
    local passed, failed, skipped = 0, 0, 0

    local function name_of(element)
        return handler.getFullName(element)
    end

    handler.testEnd = function(element, parent, status, trace)
        if status == "success" then
            passed = passed + 1
        elseif status == "pending" then
            skipped = skipped + 1
            local p = handler.pendings[#handler.pendings]
            io.stdout:write("skip ", name_of(element), ": ", tostring(p and p.message or ""), "\n")
        else
            failed = failed + 1
        end
        return nil, true
    end

    local function report(element, parent, message, debug)
        io.stdout:write("FAIL ", name_of(element), "\n    ", tostring(message), "\n")
        if debug and debug.traceback and os.getenv("APR_DEBUG") == "1" then
            io.stdout:write(debug.traceback, "\n")
        end
        io.stdout:flush()
        return nil, true
    end

    handler.failureTest = report
    handler.errorTest = report
    handler.error = function(element, parent, message, debug)
        -- an error outside any test (a spec file that does not load)
        failed = failed + 1
        io.stdout:write("ERROR ", tostring(message), "\n")
        return nil, true
    end

    handler.suiteEnd = function()
        io.stdout:write(string.format("Lua specs: %d passed, %d failed, %d skipped\n", passed, failed, skipped))
        local path = rawget(_G, "APR_TEST_COUNTS")
        if path then
            local f = io.open(path, "w")
            if f then f:write(string.format("%d %d %d\n", passed, failed, skipped)) f:close() end
        end
        return nil, true
    end

    busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
    busted.subscribe({ "failure", "it" }, handler.failureTest)
    busted.subscribe({ "error", "it" }, handler.errorTest)
    busted.subscribe({ "error", "file" }, handler.error)
    busted.subscribe({ "failure", "file" }, handler.error)
    busted.subscribe({ "error", "describe" }, handler.error)
    busted.subscribe({ "failure", "describe" }, handler.error)
    busted.subscribe({ "suite", "end" }, handler.suiteEnd)
    return handler
end
