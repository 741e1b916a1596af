-- gen_ffi.lua — turns runtime/include/apr.h into lua/apr/ffi.lua.
--
-- The header is written to be cdef-clean (see its opening comment), so this
-- only has to drop comments, preprocessor lines and the C++ extern block.
-- Usage: luajit scripts/gen_ffi.lua runtime/include/apr.h > lua/apr/ffi.lua
local path = assert(arg[1], "usage: gen_ffi.lua apr.h")
local f = assert(io.open(path, "rb"))
local src = f:read("*a")
f:close()

src = src:gsub("/%*.-%*/", ""):gsub("//[^\n]*", "")
local out, skip = {}, 0
for line in (src .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*#%s*ifdef%s+__cplusplus") then
        skip = 1
    elseif skip > 0 then
        if line:match("^%s*#%s*endif") then skip = 0 end
    elseif not line:match("^%s*#") and line:match("%S") then
        out[#out + 1] = (line:gsub("%s+$", ""))
    end
end

io.write("-- GENERATED from runtime/include/apr.h by scripts/gen_ffi.lua: do not edit.\n",
         "-- `make` regenerates it; tests/lua/ffi_spec.lua fails when it is stale.\n",
         "local ffi = require \"ffi\"\n",
         "ffi.cdef [[\n", table.concat(out, "\n"), "\n]]\n",
         "return ffi\n")
