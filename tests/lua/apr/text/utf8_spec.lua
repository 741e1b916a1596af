-- utf8_spec.lua — apr.text.utf8: strict validation, lenient iteration, Python's
-- whitespace and case rules.
local utf8 = require "apr.text.utf8"

describe("apr.text.utf8", function()
    it("validates as Python's strict UTF-8 decoder does", function()
        assert.is_true(utf8.validate("héllo 日本 😀"))
        local bad = { "\192\128", "\224\128\128", "\237\160\128", "\244\144\128\128", "\255", "\226\130", "a\128" }
        for _, s in ipairs(bad) do
            local ok, pos = utf8.validate(s)
            assert.is_false(ok, s)
            assert.is_number(pos)
        end
        assert.equal(2, select(2, utf8.validate("a\128")))
    end)

    it("walks code points leniently", function()
        assert.same({ "h", "é", "日", "😀" }, utf8.chars("hé日😀"))
        assert.same({ "a", "\255", "b" }, utf8.chars("a\255b"))
        assert.equal(4, utf8.len("hé日😀"))
        assert.equal("\237\160\128", utf8.encode(0xD800))
        assert.same({ 0xD800, 3 }, { utf8.decode("\237\160\128", 1) })
    end)

    it("strips and splits on Python's whitespace", function()
        assert.equal("x", utf8.strip("\u{3000}\u{A0} x\t\n\u{2028}"))
        assert.equal("x \u{3000}", utf8.strip(" x \u{3000}", nil, "left") .. "")
        assert.equal("hi", utf8.strip("xxhixx", "x"))
        assert.same({ "a", "b", "c" }, utf8.split_whitespace(" a \u{3000}b\tc ", -1))
        assert.same({ "a", "b c  " }, utf8.split_whitespace(" a  b c  ", 1))
        assert.is_false(utf8.space_char("\133"), "a stray byte is not whitespace")
    end)

    it("maps case for Latin, Greek and Cyrillic", function()
        assert.equal("ÉCOLE STRASSE ΣΟΦΙΑ ПРИВЕТ", utf8.upper("école straße σοφια привет"))
        assert.equal("école σοφια привет 日本", utf8.lower("ÉCOLE ΣΟΦΙΑ ПРИВЕТ 日本"))
        assert.equal("a\255", utf8.upper("a\255"):lower())
    end)
end)
