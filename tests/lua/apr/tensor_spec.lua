-- tensor_spec.lua — apr.tensor: views, owned tensors, elements, rows,
-- conversions, statistics.
local apr = require "apr"
local core = require "apr.core"
local C, ffi = core.C, core.ffi
local T = apr.tensor

-- Deterministic values in [-1, 1) (a seeded linear congruential sequence).
local function values(n, seed)
    local x, out = seed or 12345, {}
    for i = 1, n do
        x = (x * 1103515245 + 12345) % 2147483648
        out[i] = x / 1073741824 - 1
    end
    return out
end

describe("apr.tensor", function()
    it("is reachable as apr.tensor", function()
        assert.equal(require("apr.tensor"), apr.tensor)
    end)

    describe("from_table and new", function()
        it("makes a float32 tensor with the shape given, ne0 first", function()
            local t = T.from_table({ 1, 2, 3, 4, 5, 6 }, { 3, 2 })
            assert.same({ 3, 2 }, t:shape())
            assert.equal("F32", t:dtype())
            assert.equal(6, t:numel())
            assert.equal(6, #t)
            assert.equal(24, t:nbytes())
            assert.equal(2, t:ndim())
            assert.is_true(T.is_tensor(t))
            assert.is_false(T.is_tensor({}))
        end)

        it("takes an array of rows", function()
            local t = T.from_table({ { 1, 2, 3 }, { 4, 5, 6 } })
            assert.same({ 3, 2 }, t:shape())
            assert.equal(4, t:get(1, 2))
        end)

        it("quantizes when asked for another type", function()
            local v = values(512)
            local q = T.from_table(v, { 256, 2 }, "q8_0")
            assert.equal("Q8_0", q:dtype())
            assert.equal(512 / 32 * 34, q:nbytes())
            for i = 1, 512, 37 do assert.is_true(math.abs(q[i] - v[i]) < 0.01) end
        end)

        it("new gives zeros", function()
            local t = T.new("bf16", { 4, 3 })
            assert.equal("BF16", t:dtype())
            for i = 1, 12 do assert.equal(0, t[i]) end
        end)

        it("rejects bad input", function()
            assert.has_error(function() T.from_table({ 1, 2, 3 }, { 2, 2 }) end, "3 values for a shape of 4 elements")
            assert.has_error(function() T.from_table({ 1, "x" }) end, "value 2 is not a number: x")
            assert.has_error(function() T.from_table({ { 1, 2 }, { 3 } }) end)
            assert.has_error(function() T.new("q5_9", { 4 }) end, "unknown element type q5_9")
            assert.has_error(function() T.new("q4_k", { 100, 2 }) end, "rows of 100 elements are not whole blocks of 256")
            assert.has_error(function() T.new("f32", { 2.5 }) end)
            assert.has_error(function() T.new("f32", {}) end)
        end)
    end)

    describe("elements", function()
        it("are 1-based flat indices; outside the range they are nil", function()
            local t = T.from_table({ 10, 20, 30 })
            assert.equal(10, t[1])
            assert.equal(30, t[3])
            assert.is_nil(t[0])
            assert.is_nil(t[4])
            assert.has_error(function() return t[1.5] end)
        end)

        it("get takes one index per dimension, negative from the end", function()
            local t = T.from_table({ 1, 2, 3, 4, 5, 6 }, { 3, 2 })
            assert.equal(2, t:get(2, 1))
            assert.equal(6, t:get(-1, -1))
            assert.equal(4, t:get(1, 2))
            assert.has_error(function() t:get(4, 1) end, "index 1 is 4, outside 1..3")
            assert.has_error(function() t:get(1) end)
        end)

        it("can be written in owned plain tensors", function()
            local t = T.new("f32", { 3 })
            t[2] = 1.5
            t:set(3, -2)
            assert.same({ 0, 1.5, -2 }, t:table())
            local h = T.new("f16", { 2 })
            h[1] = 1 / 3
            assert.equal(0.333251953125, h[1])   -- the nearest half
            local q = T.new("q8_0", { 32 })
            assert.has_error(function() q[1] = 1 end)
            assert.has_error(function() t[4] = 1 end, "index 4 is outside 1..3")
            assert.has_error(function() t.foo = 1 end)
        end)

        it("of a block format match the full dequantization", function()
            for _, dtype in ipairs({ "q4_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k" }) do
                local q = T.from_table(values(1024, 7), { 512, 2 }, dtype)
                local all = q:table()
                assert.equal(1024, #all)
                for i = 1, 1024, 13 do assert.equal(all[i], q[i]) end
                assert.equal(all[1024], q:get(-1, -1))
            end
        end)
    end)

    describe("rows", function()
        it("of an F32 tensor are views sharing its memory", function()
            local t = T.from_table({ 1, 2, 3, 4, 5, 6 }, { 3, 2 })
            assert.equal(2, t:nrows())
            local last = t:row(-1)
            assert.same({ 3 }, last:shape())
            assert.same({ 4, 5, 6 }, last:table())
            last[1] = 40
            assert.equal(40, t[4])
            assert.same({ 1, 2, 3 }, t:row(1):table())
            assert.has_error(function() t:row(3) end, "row 3 is outside 1..2")
            assert.has_error(function() t:row(-3) end)
        end)

        it("of a block format are views of whole blocks", function()
            local q = T.from_table(values(768, 3), { 256, 3 }, "q6_k")
            local r = q:row(2)
            assert.equal("Q6_K", r:dtype())
            assert.equal(210, r:nbytes())
            local all = q:table()
            assert.equal(all[257], r[1])
            assert.equal(all[512], r[256])
        end)

        it("keep their parent alive", function()
            local row
            do
                local t = T.from_table({ 1, 2, 3, 4 }, { 2, 2 })
                row = t:row(2)
            end
            collectgarbage()
            collectgarbage()
            assert.same({ 3, 4 }, row:table())
        end)
    end)

    describe("view", function()
        it("reads memory it does not own and keeps keepalive referenced", function()
            local freed = false
            local mem = ffi.gc(C.apr_alloc(16), function(p) freed = true C.apr_free(p) end)
            local f = ffi.cast("float *", mem)
            for i = 0, 3 do f[i] = i * 0.5 end
            local v = T.view(mem, "F32", { 2, 2 }, mem)
            mem, f = nil, nil
            collectgarbage()
            collectgarbage()
            assert.is_false(freed)
            assert.equal(1.5, v:get(2, 2))
            assert.is_false(v:writable())
            assert.has_error(function() v[1] = 3 end, "this tensor is a read-only view; copy it with :to()")
            v = nil
            collectgarbage()
            collectgarbage()
            assert.is_true(freed)
        end)

        it("accepts dtype numbers and checks the shape", function()
            local buf = ffi.new("uint8_t[34]")
            local v = T.view(buf, tonumber(C.APR_Q8_0), { 32 }, buf)
            assert.equal("Q8_0", v:dtype())
            assert.has_error(function() T.view(buf, "q8_0", { 31 }, buf) end)
            assert.has_error(function() T.view(nil, "f32", { 1 }) end, "view of a NULL pointer")
        end)
    end)

    describe("to", function()
        it("converts between all the quantizable types", function()
            local v = values(512, 99)
            local f = T.from_table(v, { 256, 2 })
            for _, dtype in ipairs({ "f16", "bf16", "q8_0", "q4_k", "q6_k", "q5_k", "q4_0", "q4_1", "q5_0", "q5_1" }) do
                local q = assert(f:to(dtype))
                assert.equal(dtype:upper(), q:dtype())
                assert.same({ 256, 2 }, q:shape())
                local back = q:to("f32")
                assert.equal("F32", back:dtype())
                local worst = 0
                for i = 1, 512 do worst = math.max(worst, math.abs(back[i] - v[i])) end
                assert.is_true(worst < 0.15, dtype .. " worst error " .. worst)
                assert.is_true(back:writable())
            end
        end)

        it("makes an independent copy", function()
            local f = T.from_table({ 1, 2 })
            local g = f:to("f32")
            g[1] = 9
            assert.equal(1, f[1])
        end)

        it("refuses what cannot be done", function()
            local f = T.from_table({ 1, 2, 3 })
            assert.has_error(function() f:to("q8_0") end, "rows of 3 elements cannot be Q8_0, whose blocks hold 32")
            assert.has_error(function() f:to("q2_k") end, "converting to Q2_K is not supported")
            local nan = T.from_table(values(32))
            nan[5] = 0 / 0
            local q, err = nan:to("q8_0")
            assert.is_nil(q)
            assert.matches("element 4 is NaN", err)
        end)
    end)

    describe("stats", function()
        it("gives min, max, mean, std and NaN/Inf counts", function()
            local t = T.from_table({ 1, 2, 3, 4, 0 / 0, 1 / 0 })
            local s = t:stats()
            assert.equal(1, s.min)
            assert.equal(4, s.max)
            assert.equal(2.5, s.mean)
            assert.is_true(math.abs(s.std - math.sqrt(1.25)) < 1e-12)
            assert.equal(1, s.nan)
            assert.equal(1, s.inf)
            assert.equal(6, s.n)
        end)

        it("works on block formats", function()
            local v = values(4096, 5)
            local q = T.from_table(v, { 256, 16 }, "q4_k")
            local s = q:stats()
            local all, sum = q:table(), 0
            for i = 1, #all do sum = sum + all[i] end
            assert.is_true(math.abs(s.mean - sum / #all) < 1e-12)
            assert.is_true(s.std > 0.5 and s.std < 0.65)   -- uniform on [-1, 1): 0.577
        end)
    end)

    it("prints its type, shape and a few values", function()
        assert.equal("tensor F32 [3] { 1, 2, 3 }", tostring(T.from_table({ 1, 2, 3 })))
        assert.equal("tensor F32 [3, 2] { 1, 2, 3, 4, ..., 6 }",
            tostring(T.from_table({ 1, 2, 3, 4, 5, 6 }, { 3, 2 })))
        assert.equal("tensor F16 [5] { 0, 0, 0, 0, 0 }", tostring(T.new("f16", { 5 })))
    end)
end)
