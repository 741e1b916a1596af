-- body_spec.lua — request bodies decoded as JSON, large ones on the thread
-- pool: the same value either way (key order, long strings, numbers,
-- nulls), and the same errors.
local uv = require "luv"
local json = require "apr.json"
local body = require "apr.server.body"
local http = require "apr.server.http"
local client = require "tests.lua.apr.server.client"

-- Runs fn in a coroutine as a handler would, with the loop turning.
local function in_handler(fn)
    local out
    local co = coroutine.create(function() out = { fn() } end)
    http.resume(co)
    client.run_until(function() return out ~= nil end, 30)
    return unpack(out or {})
end

describe("server body", function()
    local long = string.rep("lorem ipsum ", 20000)  -- 240 KB: over the inline limit
    local text = '{"z": 1, "prompt": ' .. json.encode(long) .. ', "a": [1.0, null, "x", ' .. json.encode(long .. "!") ..
        '], "n": 12345678901234567890, "o": {"k2": "v", "k1": ' .. json.encode("\0apr-long-0:1") .. '}}'

    it("decodes a large body off the loop to the value the loop would decode", function()
        assert.is_true(#text > body.INLINE)
        local v = in_handler(function() return body.decode(text) end)
        local inline = json.decode(text)
        assert.same(json.keys(inline), json.keys(v))
        assert.equal(long, v.prompt)
        assert.equal(long .. "!", v.a[4])
        assert.equal(json.null, v.a[2])
        assert.same({ "k2", "k1" }, json.keys(v.o))
        assert.equal("\0apr-long-0:1", v.o.k1)  -- a body's own look-alike of a marker stays as it is
        assert.equal(json.encode(inline), json.encode(v))
    end)

    it("reports bad UTF-8 and bad JSON the same way, large or small", function()
        for _, pad in ipairs({ "", string.rep(" ", body.INLINE + 1) }) do
            local v, kind, at = in_handler(function() return body.decode(pad .. '{"a": "\xff"}') end)
            assert.is_nil(v)
            assert.equal("utf8", kind)
            assert.equal(#pad + 8, at)
            v, kind = in_handler(function() return body.decode(pad .. '{"a": }') end)
            assert.is_nil(v)
            assert.equal("json", kind)
        end
    end)

    it("leaves the loop free while a large body is decoded", function()
        local big = '{"prompt": ' .. json.encode(string.rep("word ", 1600000)) .. '}'  -- 8 MB
        local ticks, done = 0, false
        local timer = uv.new_timer()
        timer:start(1, 1, function() ticks = ticks + 1 end)
        local co = coroutine.create(function()
            body.decode(big)
            done = true
        end)
        http.resume(co)
        local ticks_when_started = ticks
        client.run_until(function() return done end, 60)
        timer:close()
        assert.is_true(done)
        -- The loop went round while the worker decoded: the timer fired.
        assert.is_true(ticks > ticks_when_started)
    end)
end)
