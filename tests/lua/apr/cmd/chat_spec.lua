-- chat_spec.lua — `apr chat` driven through piped stdin: turns, context
-- reuse, /save, /load, /clear, /exit, the history file.
local h = require "tests.lua.helpers"

local fixtures = require "tests.lua.model_fixtures"

local TINY = fixtures.TINY
local json = require "cjson"

local function read_json(path)
    return json.decode(h.read_file(path))
end

describe("apr chat", function()
    local dir
    before_each(function() dir = h.tmpdir() end)
    after_each(function() h.rmtree(dir) end)

    local function chat(args, input)
        return h.apr(string.format("chat %s --history %s/h.json --temperature 0 --max-tokens 6 %s", TINY, dir, args),
            input)
    end

    it("answers each line and reuses the conversation's cached blocks", function()
        -- a system prompt long enough to fill whole blocks of 32 tokens
        local r = chat("--verbose --system '" .. string.rep("You answer briefly and kindly. ", 12) .. "'",
            "Hello\nAnd then?\n")
        assert.equal(0, r.code, r.err)
        local reused = {}
        for n in r.err:gmatch("%((%d+) reused%)") do reused[#reused + 1] = tonumber(n) end
        assert.equal(2, #reused, r.err)
        assert.equal(0, reused[1])
        assert.is_true(reused[2] >= 64, "the second turn reuses the first")
        local saved = read_json(dir .. "/h.json").messages
        assert.equal(5, #saved)
        assert.same({ "system", "user", "assistant", "user", "assistant" },
            { saved[1].role, saved[2].role, saved[3].role, saved[4].role, saved[5].role })
        assert.equal("And then?", saved[4].content)
    end)

    it("saves, clears and loads conversations", function()
        local other = dir .. "/other.json"
        local r = chat("--system 'Be brief.'",
            "First\n/save " .. other .. "\n/clear\nSecond\n/load " .. other .. "\nThird\n/exit\nNever\n")
        assert.equal(0, r.code, r.err)
        local saved = read_json(other).messages
        assert.equal(3, #saved)
        assert.same({ role = "system", content = "Be brief." }, saved[1])
        assert.equal("First", saved[2].content)
        local final = read_json(dir .. "/h.json").messages
        assert.equal(5, #final)
        assert.equal("First", final[2].content)
        assert.equal("Third", final[4].content)
        assert.truthy(r.err:find("(conversation cleared)", 1, true))
        assert.truthy(r.err:find("(loaded 3 messages", 1, true))
        -- /exit ended the session: "Never" got no answer
        for _, m in ipairs(final) do assert.not_equal("Never", m.content) end
    end)

    it("reports a bad /load without ending the session", function()
        local bad = dir .. "/bad.json"
        local f = assert(io.open(bad, "w"))
        f:write("[not json")
        f:close()
        local r = chat("", "/load " .. bad .. "\n/load " .. dir .. "/missing.json\nHi\n")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("not JSON", 1, true), r.err)
        assert.truthy(r.err:find("missing.json", 1, true), r.err)
        assert.equal(2, #read_json(dir .. "/h.json").messages)
    end)

    it("refuses to /save over anything but a regular file", function()
        local fifo = dir .. "/pipe"
        assert(os.execute("mkfifo " .. fifo) == 0)
        local r = chat("", "Hi\n/save " .. fifo .. "\n")
        assert.equal(0, r.code, r.err)
        assert.truthy(r.err:find("/save: " .. fifo .. ": not a regular file\n", 1, true), r.err)
        assert.equal("fifo", require("luv").fs_lstat(fifo).type)
    end)

    it("resumes the conversation of the history file", function()
        chat("", "One\n")
        local r = chat("--resume --verbose", "Two\n")
        assert.equal(0, r.code, r.err)
        assert.equal(4, #read_json(dir .. "/h.json").messages)
    end)

    it("drops the oldest turns when the conversation outgrows the context", function()
        local r = chat("--ctx 96", string.rep("tell me more about this long topic please\n", 6))
        assert.equal(0, r.code, r.err)
        local saved = read_json(dir .. "/h.json").messages
        assert.is_true(#saved < 12, "old turns were dropped")
    end)

    it("stops the answer on Ctrl+C and goes on with the next line", function()
        -- A prompt of ~28K tokens keeps the tiny model busy for seconds, so
        -- the signal lands while the first answer is being worked on.
        local model = fixtures.long_context_copy(dir)
        local input = dir .. "/in.txt"
        local f = assert(io.open(input, "w"))
        f:write(string.rep("word ", 14000), "\n/clear\nSecond\n")
        f:close()
        local p = assert(io.popen(string.format(
            "%s chat %s --history %s/h.json --ctx 32768 --temperature 0 --max-tokens 5 < %s > %s/out 2> %s/err & " ..
            "pid=$!; sleep 0.5; kill -INT $pid; wait $pid; echo $?", h.apr_bin, model, dir, input, dir, dir)))
        local code = p:read("*a")
        p:close()
        local err = h.read_file(dir .. "/err")
        assert.equal("0\n", code, err)
        assert.truthy(err:find("(interrupted)", 1, true), err)
        local saved = read_json(dir .. "/h.json").messages
        assert.equal(2, #saved)
        assert.equal("Second", saved[1].content)
        assert.is_true(#saved[2].content > 0)
    end)

    it("ends at end of input with exit 0", function()
        local r = chat("", "")
        assert.equal(0, r.code, r.err)
        assert.equal("", r.out)
    end)
end)
