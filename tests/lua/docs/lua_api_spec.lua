-- lua_api_spec.lua — every example of docs/lua-api.md is a whole script
-- that `apr run` runs without an error.
local h = require "tests.lua.helpers"

local DEFAULT_MODEL = "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


describe("docs/lua-api.md examples", function()
    local n = 0
    for block in h.read_file("docs/lua-api.md"):gmatch("```lua\n(.-)```") do
        n = n + 1
        local first = block:match("^[^\n]*")
        it(string.format("example %d runs (%s)", n, first), function()
            if block:find(DEFAULT_MODEL, 1, true) and not h.exists(DEFAULT_MODEL) then
                pending("the default model is not installed (make model)")
                return
            end
            local path = os.tmpname()
            local f = assert(io.open(path, "wb"))
            f:write(block)
            f:close()
            local r = h.apr("run " .. path)
            os.remove(path)
            assert.equal(0, r.code, r.err)
        end)
    end
    it("has examples", function() assert.is_true(n >= 8) end)
end)
