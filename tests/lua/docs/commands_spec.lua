-- commands_spec.lua — docs/commands.md and README.md describe every command
-- apr has, with the usage and the options `apr CMD --help` gives.
local h = require "tests.lua.helpers"
local cli = require "apr.cli"

local DOC = h.read_file("docs/commands.md")
local README = h.read_file("README.md")

-- The text of docs/commands.md from "## apr NAME" to the next heading.
local function section(name)
    local start = DOC:find("\n## apr " .. name .. "\n", 1, true)
    if not start then return nil end
    local stop = DOC:find("\n## ", start + 1, true)
    return DOC:sub(start, stop or #DOC)
end

describe("docs/commands.md", function()
    for _, name in ipairs(cli.commands) do
        it("describes apr " .. name .. " with its usage line and every option", function()
            local text = section(name)
            assert.is_not_nil(text, "no section '## apr " .. name .. "'")
            local spec = cli.load_command(name).spec
            assert.truthy(text:find("\n" .. spec.usage .. "\n", 1, true), "usage line of " .. name)
            for _, opt in ipairs(spec.options or {}) do
                local pattern = ("--" .. opt[1]):gsub("%-", "%%-") .. "%f[^%w-]"
                assert.truthy(text:find(pattern), name .. " --" .. opt[1])
            end
        end)
    end
end)

describe("README.md", function()
    it("has a row with an example for every command", function()
        for _, name in ipairs(cli.commands) do
            local row = README:match("\n| `apr " .. name .. "` |([^\n]*)")
            assert.is_not_nil(row, "no row for apr " .. name)
            assert.truthy(row:find("`[^`]*apr " .. name .. "[^`]*` |$"), "no example for apr " .. name)
        end
    end)
end)
