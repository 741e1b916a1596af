-- await.lua — straight-line code over callbacks: a coroutine hands a
-- callback to an asynchronous call and sleeps until it is called.
--
--   local a, b = await(function(cb) something(args, cb) end, resume)
--
-- returns the callback's arguments, also when the callback runs before
-- subscribe returns (the value is then returned without yielding).
-- `resume(co, ...)` is how the caller's scheduler resumes a coroutine: the
-- server answers a handler's error with a 500, the benchmark stops its
-- loop, so each passes its own.
return function(subscribe, resume, where)
    local co = coroutine.running()
    if not co then error("await outside " .. (where or "a coroutine"), 3) end
    local waiting, early = false, nil
    subscribe(function(...)
        if waiting then
            waiting = false
            resume(co, ...)
        elseif not early then
            early = { n = select("#", ...), ... }
        end
    end)
    if early then return unpack(early, 1, early.n) end
    waiting = true
    return coroutine.yield()
end
