-- busted.lua — runs the busted specs under apr's own LuaJIT, so specs load
-- the runtime through the same generated FFI as production code.
--
-- usage: apr run tests/busted.lua [--counts FILE] [busted args...]
-- Without spec paths it runs every tests/**/*_spec.lua.
local counts
local pass = {}
local i = 1
while i <= #arg do
    if arg[i] == "--counts" then
        counts = arg[i + 1]
        i = i + 2
    else
        pass[#pass + 1] = arg[i]
        i = i + 1
    end
end
local has_path = false
for _, a in ipairs(pass) do if not a:match("^%-") then has_path = true end end
if not has_path then pass[#pass + 1] = "tests" end
table.insert(pass, 1, "--pattern=_spec")
table.insert(pass, 1, "--output=tests.lua.summary_output")
if counts then _G.APR_TEST_COUNTS = counts end
_G.arg = pass
package.path = "./?.lua;" .. package.path
-- luv loads once, before busted: busted restores package.loaded after each
-- spec file, and a luv loaded inside one file is then collected, closing
-- libuv's default loop under the next file that loads it (a crash in
-- uv_tcp_init). Loaded here, it is part of what busted restores to.
local uv = require "luv"
-- busted raises to report failures (its exit() under Lua 5.1); the handles
-- are closed either way, then the outcome goes on.
local ok, err = pcall(require("busted.runner"), { standalone = false, output = "tests.lua.summary_output" })
-- Handles a spec left open would be closed by luv while the Lua state is
-- being torn down, calling back into it: close them while it is whole.
uv.walk(function(handle) if not handle:is_closing() then handle:close() end end)
uv.run("default")
if not ok then error(err, 0) end
