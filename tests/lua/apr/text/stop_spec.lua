-- stop_spec.lua — stop strings across token boundaries, never emitted.
local stopper = require "apr.text.stop"

-- Feeds pieces and returns the emitted text and whether a stop matched.
local function run(stops, pieces)
    local s = stopper.new(stops)
    local out = {}
    for _, p in ipairs(pieces) do
        local text, stopped = s:push(p)
        out[#out + 1] = text
        if stopped then return table.concat(out), true end
    end
    out[#out + 1] = s:flush()
    return table.concat(out), false
end

describe("apr.text.stop", function()
    it("passes text through when there are no stop strings", function()
        assert.same({ "abc", false }, { run({}, { "a", "b", "c" }) })
    end)

    it("stops before a stop string inside one piece", function()
        assert.same({ "hello ", true }, { run({ "END" }, { "hello END more" }) })
    end)

    it("matches a stop string split over several pieces and emits none of it", function()
        local s = stopper.new({ "</end>" })
        assert.same({ "x", false }, { s:push("x</") })   -- "</" might start the stop
        assert.same({ "", false }, { s:push("en") })
        assert.same({ "", true }, { s:push("d>tail") })
    end)

    it("releases held text when it turns out not to be a stop string", function()
        local s = stopper.new({ "</end>" })
        assert.equal("a", (s:push("a</e")))
        assert.equal("</ex", (s:push("x")))
        assert.equal("", s:flush())
    end)

    it("gives back held text at the end of the stream", function()
        assert.same({ "abc\n", false }, { run({ "\n\n" }, { "abc", "\n" }) })
    end)

    it("stops at the earliest of several stop strings", function()
        assert.same({ "12", true }, { run({ "45", "3" }, { "12345" }) })
    end)

    it("holds back only what could start a stop string (UTF-8 stays whole)", function()
        local s = stopper.new({ "ωΩ" })
        assert.equal("aω", (s:push("aωω")))
        assert.equal("ω", (s:push("b"):sub(1, #"ω")))
    end)

    it("ignores empty stop strings and rejects non-strings", function()
        assert.same({ "ab", false }, { run({ "" }, { "a", "b" }) })
        assert.has_error(function() stopper.new({ 1 }) end)
    end)
end)
