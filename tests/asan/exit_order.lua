-- exit_order.lua MODEL — loads MODEL, makes a context (by generating) and an
-- engine, and ends without freeing anything, so that lua_close runs the
-- finalizers of the model, its context and its engine in whatever order it
-- picks (issue 16: the model used to go first and the context then called
-- its freed backend). tests/asan/exit_order.sh runs it under ASan.
local apr = require "apr"
local m = assert(apr.load(arg[1], { device = "cpu", ctx = 256 }))
for _ in m:generate("hi", { max_tokens = 2, temperature = 0 }) do end
local engine = assert(require("apr.server.engine").new(m, { parallel = 2, ctx = 256 }))
assert(engine:stats().n_seq == 2)
print("ok")
