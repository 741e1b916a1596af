-- ffi_spec.lua — lua/apr/ffi.lua is what scripts/gen_ffi.lua makes of apr.h now.
local h = require "tests.lua.helpers"

describe("generated FFI", function()
    it("is not stale", function()
        local p = assert(io.popen("luajit scripts/gen_ffi.lua runtime/include/apr.h"))
        local fresh = p:read("*a")
        p:close()
        assert.truthy(#fresh > 100)
        assert.equal(fresh, h.read_file("lua/apr/ffi.lua"))
    end)

    it("is the only ffi.cdef in lua/", function()
        local p = assert(io.popen("grep -rl 'ffi.cdef' lua/ demos/ 2>/dev/null"))
        local files = p:read("*a")
        p:close()
        assert.equal("lua/apr/ffi.lua\n", files)
    end)
end)
