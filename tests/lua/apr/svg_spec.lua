-- svg_spec.lua — apr.svg: escaping, numbers, structure; what it writes
-- parses as XML whatever the text (Python's xml.etree as the parser).
local svg = require "apr.svg"
local h = require "tests.lua.helpers"

local function parses(text)
    local dir = h.tmpdir()
    local f = assert(io.open(dir .. "/t.svg", "wb"))
    f:write(text)
    f:close()
    local p = io.popen(string.format("/usr/bin/python3 -c \"import sys, xml.etree.ElementTree as E; " ..
        "r = E.parse(sys.argv[1]).getroot(); print(r.tag, len(list(r.iter())))\" %s/t.svg 2>&1", dir))
    local out = p:read("*a")
    p:close()
    h.rmtree(dir)
    return out
end

describe("apr.svg", function()
    it("escapes markup, drops characters XML forbids and keeps text that is not UTF-8 ASCII-only", function()
        assert.equal("&lt;/svg&gt;&lt;script&gt; &amp; &quot;q&quot; &#39;s&#39;", svg.escape("</svg><script> & \"q\" 's'"))
        assert.equal("ab", svg.escape("a\0\1\27b"))
        assert.equal("tab\tnl\n", svg.escape("tab\tnl\n"))
        assert.equal("caf\195\169", svg.escape("caf\195\169"))
        assert.equal("bad ?? byte", svg.escape("bad \255\254 byte"))
    end)

    it("writes coordinates with at most two decimals and refuses NaN", function()
        assert.equal("1.5", svg.number(1.5))
        assert.equal("2", svg.number(2.0))
        assert.equal("0.33", svg.number(1 / 3))
        assert.equal("0", svg.number(-0.001))
        assert.has_error(function() svg.number(0 / 0) end)
        assert.has_error(function()
            local d = svg.new(10, 10)
            d:rect({ x = 1 / 0 })
            d:render()
        end)
    end)

    it("writes a document any XML parser reads, whatever its text", function()
        local d = svg.new(200, 100, { title = "t </title> & \255" })
        local g = d:group({ transform = "translate(1,2)" })
        g:rect({ x = 0, y = 0, width = 10, height = 20, fill = "#0072b2", ["data-x"] = "a\"b" }):title("bar <1>")
        g:text(5, 5, "label ]]> <!-- & \0")
        g:line(0, 0, 10, 10, { stroke = "#000" })
        g:polyline({ { 0, 0 }, { 1.234, 5.678 } }, { stroke = "red" })
        g:circle(1, 2, 3)
        local text = d:render()
        assert.truthy(text:find('points="0,0 1.23,5.68"', 1, true))
        -- Elements without text close themselves; a table of attributes given
        -- to several elements leaves each its own coordinates.
        assert.truthy(text:find('<line stroke="#000" x1="0" x2="10" y1="0" y2="10"/>', 1, true), text)
        local shared = { stroke = "#111" }
        local d2 = svg.new(10, 10)
        d2:line(1, 2, 3, 4, shared)
        d2:line(5, 6, 7, 8, shared)
        local t2 = d2:render()
        assert.truthy(t2:find('x1="1" x2="3" y1="2" y2="4"', 1, true), t2)
        assert.truthy(t2:find('x1="5" x2="7" y1="6" y2="8"', 1, true), t2)
        assert.is_nil(shared.x1)
        assert.equal("{http://www.w3.org/2000/svg}svg 10\n", parses(text))
        assert.has_error(function()
            local bad = svg.new(1, 1)
            bad:rect({ ["bad name"] = 1 })
            bad:render()
        end)
    end)
end)
