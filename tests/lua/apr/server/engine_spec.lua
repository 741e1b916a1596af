-- engine_spec.lua — the engine thread seen from the loop: pieces of text,
-- stop strings across tokens, cancellation, the generate iterator, retire.
local uv = require "luv"
local http = require "apr.server.http"
local engine = require "apr.server.engine"
local client = require "tests.lua.apr.server.client"

local MODEL = "tests/fixtures/models/tiny-q8_0.gguf"

-- Runs the loop until start's done() is called (or 20 s pass).
local function run_until(start)
    local finished = false
    start(function() finished = true end)
    assert.is_true(client.run_until(function() return finished end, 20), "timed out")
end

local function generate(eng, ids, opts)
    local pieces
    run_until(function(done)
        pieces = {}
        assert(eng:start(ids, opts, function(p)
            pieces[#pieces + 1] = p
            if p.finish_reason then done() end
        end))
    end)
    return pieces
end

local function text_of(pieces)
    local t = {}
    for i, p in ipairs(pieces) do t[i] = p.text end
    return table.concat(t)
end

describe("server engine", function()
    local m, eng
    setup(function()
        m = assert(require("apr.model").load(MODEL, { device = "cpu" }))
        eng = assert(engine.new(m, { parallel = 2, ctx = 512 }))
    end)
    teardown(function() eng:retire() end)

    it("streams pieces with timing, logprobs and a finish reason", function()
        local ids = m:tokenize("Hello world")
        local pieces = generate(eng, ids, { max_tokens = 6, temperature = 0, logprobs = true, top_logprobs = 2 })
        assert.equal(6, #pieces)
        assert.equal("length", pieces[6].finish_reason)
        assert.is_number(pieces[1].ttft)
        assert.is_number(pieces[2].itl)
        assert.equal(2, #pieces[1].top)
        assert.equal(pieces[1].token, pieces[1].top[1].id)
        assert.equal(6, pieces[6].n_generated)
        assert.equal(#ids, pieces[6].n_prompt)
        assert.equal(0, eng:in_flight())
    end)

    it("ends at a stop string split across tokens, without any of it", function()
        local ids = m:tokenize("The")
        local full = text_of(generate(eng, ids, { max_tokens = 12, temperature = 0 }))
        local at = full:find("[%w ][%w ][%w ]", 2)
        assert.is_not_nil(at, full)
        local stop = full:sub(at, at + 2)
        local pieces = generate(eng, ids, { max_tokens = 12, temperature = 0, stop = { stop } })
        assert.equal("stop", pieces[#pieces].finish_reason)
        assert.is_true(pieces[#pieces].stop_string)
        assert.equal(full:sub(1, full:find(stop, 1, true) - 1), text_of(pieces))
    end)

    it("cancels a generation and frees its sequence", function()
        local ids = m:tokenize("Go")
        local got = 0
        run_until(function(done)
            local gen
            gen = assert(eng:start(ids, { max_tokens = 400, ignore_eos = true }, function()
                got = got + 1
                if got == 3 then
                    gen:cancel()
                    done()
                end
            end))
        end)
        client.sleep(100)  -- a cancelled request sends nothing more
        assert.equal(3, got)
        assert.equal(0, eng:in_flight())
        assert.equal(0, eng:stats().running)
    end)

    it("gives model:generate's iterator inside a handler coroutine", function()
        local out, summary
        run_until(function(done)
            local co = coroutine.create(function()
                local gen = eng:generate("Hello", { max_tokens = 4, temperature = 0 })
                local parts = {}
                for t in gen do parts[#parts + 1] = t.text end
                out, summary = table.concat(parts), gen.summary
                done()
            end)
            http.resume(co)
        end)
        assert.equal("length", summary.finish_reason)
        assert.equal(4, summary.n_generated)
        assert.equal(out, summary.text)
    end)

    it("takes a KV cache type by name", function()
        local q = assert(engine.new(m, { parallel = 1, ctx = 128, kv_type = "q4_0" }))
        local pieces = generate(q, m:tokenize("Hello world"), { max_tokens = 3, temperature = 0 })
        assert.equal(3, #pieces)
        q:retire()
        local none, err = engine.new(m, { parallel = 1, ctx = 128, kv_type = "q5_1" })
        assert.is_nil(none)
        assert.equal("kv_type must be f16, q8_0, q4_0, got 'q5_1'", err)
    end)

    it("refuses what the engine cannot take", function()
        local gen, err, kind = eng:start({ 1, 2 ^ 20 }, {}, function() end)
        assert.is_nil(gen)
        assert.equal("range", kind)
        assert.truthy(err:find("1048576", 1, true))
        gen, err, kind = eng:start({ 1 }, { top_p = 5 }, function() end)
        assert.is_nil(gen)
        assert.equal("invalid", kind)
    end)
end)
