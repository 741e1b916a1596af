-- generation_spec.lua — the options apr pass and apr chat share.
local generation = require "apr.cli.generation"

local function by_name(list)
    local out = {}
    for _, opt in ipairs(list) do out[opt[1]] = opt end
    return out
end

describe("apr.cli.generation.options", function()
    it("takes a shared option by name, and overrides only the fields given", function()
        local opts = by_name(generation.options({
            "top-k", { "temperature", default = 0.7 }, { "raw", help = "no template" },
        }))
        assert.equal("K", opts["top-k"].value)
        assert.equal(0.7, opts.temperature.default)
        assert.equal("t", opts.temperature.short)
        assert.equal("no template", opts.raw.help)
    end)

    it("keeps the order given and leaves the shared definitions alone", function()
        local list = generation.options({ "seed", { "temperature", default = 0.7 }, "ctx" })
        assert.same({ "seed", "temperature", "ctx" }, { list[1][1], list[2][1], list[3][1] })
        assert.equal(0, by_name(generation.options({ "temperature" })).temperature.default)
    end)

    it("refuses a name that is neither shared nor described", function()
        assert.has_error(function() generation.options({ "top_k" }) end, "no shared option 'top_k'")
    end)
end)

describe("apr.cli.generation.generate_opts", function()
    it("maps the command line onto m:generate's options", function()
        local g = generation.generate_opts({ max_tokens = 5, temperature = 0, top_k = 3, stop = { "x" } })
        assert.same({ max_tokens = 5, temperature = 0, top_k = 3, stop = { "x" } }, g)
    end)
end)
