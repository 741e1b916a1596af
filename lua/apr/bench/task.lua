-- bench/task.lua — straight-line code over luv's callbacks: the benchmark
-- runs as coroutines that wait for a request, a timer or a process, while
-- the loop keeps every other stream (and the GPU sampler) moving.
--
--   task.run(function() ... task.sleep(100) ... end)   -- runs the loop until fn returns
--   local a, b = task.await(function(cb) something(args, cb) end)
--   task.all({ fn1, fn2, ... })                          -- concurrently, waits for all
local uv = require "luv"
local await = require "apr.await"

local M = {}

-- Errors raised inside a resumed coroutine keep their value (a cli.fail
-- table stays one) and get the coroutine's traceback for bugs.
local failure
-- Each task.run is a generation: a coroutine of a run that was cancelled
-- is never resumed again (its callbacks may still fire while the cleanup
-- runs in the next generation).
local generation = 0
local born = setmetatable({}, { __mode = "k" })

local function resume(co, ...)
    if born[co] ~= generation then return end
    local ok, err = coroutine.resume(co, ...)
    if not ok and not failure then
        failure = { err = err, traceback = debug.traceback(co, tostring(err)) }
        uv.stop()
    end
end

-- await(subscribe) suspends the calling coroutine until subscribe's
-- callback is called, and returns the callback's arguments (apr/await.lua).
function M.await(subscribe) return await(subscribe, resume, "a task") end

function M.sleep(ms)
    if ms <= 0 then return end
    M.await(function(cb)
        local t = uv.new_timer()
        t:start(math.floor(ms), 0, function()
            t:close()
            cb()
        end)
    end)
end

-- Seconds on the monotonic clock (nanosecond resolution).
function M.now() return uv.hrtime() * 1e-9 end

-- spawn(fn, ...) starts fn in its own coroutine now; it runs until it
-- first waits.
function M.spawn(fn, ...)
    local co = coroutine.create(fn)
    born[co] = generation
    resume(co, ...)
end

-- all(fns): runs each function in its own coroutine and waits until every
-- one has returned; returns their first results in order.
function M.all(fns)
    local n, left, results = #fns, #fns, {}
    if n == 0 then return results end
    M.await(function(cb)
        for i, fn in ipairs(fns) do
            M.spawn(function()
                results[i] = fn()
                left = left - 1
                if left == 0 then cb() end
            end)
        end
    end)
    return results
end

-- cancel(err): stops task.run, which raises err (an interrupt, say).
function M.cancel(err)
    if not failure then failure = { err = err, traceback = tostring(err) } end
    uv.stop()
end

-- run(fn, ...) runs fn as the main task and the loop until it returns (or
-- raises: the error is raised again here, with its value intact). Handles
-- left open (timers, a server's pipes) do not keep it waiting.
function M.run(fn, ...)
    failure = nil
    generation = generation + 1
    local done, result = false, nil
    local args = { n = select("#", ...), ... }
    M.spawn(function()
        result = { fn(unpack(args, 1, args.n)) }
        done = true
        uv.stop()
    end)
    while not done and not failure do
        uv.run("default")
        if not done and not failure and not uv.loop_alive() then
            failure = { err = "internal: the benchmark waits on nothing (a callback was lost)" }
        end
    end
    if failure then
        local f = failure
        failure = nil
        if type(f.err) == "table" or os.getenv("APR_DEBUG") ~= "1" then error(f.err, 0) end
        error(f.traceback, 0)
    end
    return unpack(result)
end

return M
