-- stats_spec.lua — lua/apr/bench/stats.lua against Debian's python3-scipy
-- (tests/lua/apr/bench/stats_oracle.py): the same p-values, intervals and
-- summaries on seeded random samples of the sizes and spreads benchmarks
-- produce, and on edge cases.
local stats = require "apr.bench.stats"
local json = require "apr.json"
local h = require "tests.lua.helpers"

-- Debian's interpreter, where python3-scipy lives (scripts/deps.sh).
local PYTHON = "/usr/bin/python3"

-- Seeded normal samples (Box-Muller over LuaJIT's PRNG).
local function normal(n, mu, sigma)
    local out = {}
    for i = 1, n do
        local u1, u2 = math.random(), math.random()
        out[i] = mu + sigma * math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
    end
    return out
end

local function close(got, want, rel, what)
    want = want ~= nil and want ~= json.null and json.tonumber(want) or nil
    if want == nil then
        assert(got == nil, string.format("%s: got %s, scipy has none", what, tostring(got)))
        return
    end
    assert(got ~= nil, string.format("%s: got nil, scipy has %.17g", what, want))
    local tol = math.max(rel * math.abs(want), 1e-14)
    assert(math.abs(got - want) <= tol,
        string.format("%s: got %.17g, scipy %.17g (rel. error %.3g)", what, got, want, math.abs(got - want) / math.abs(want)))
end

local function scipy(query)
    local dir = h.tmpdir()
    local qpath, apath = dir .. "/q.json", dir .. "/a.json"
    local f = assert(io.open(qpath, "wb"))
    f:write(json.encode(query))
    f:close()
    local ok = os.execute(string.format("%s tests/lua/apr/bench/stats_oracle.py <%s >%s", PYTHON, qpath, apath))
    local text = h.read_file(apath)
    h.rmtree(dir)
    assert(ok == 0 and text ~= "", "the scipy oracle failed (is python3-scipy installed? run `make deps`)")
    return json.decode(text)
end

describe("bench statistics against scipy", function()
    math.randomseed(20240613)
    local cases = {}
    local function add(a, b)
        local x, y = {}, {}
        for i = 1, #a do x[i] = i * 7.5 y[i] = a[i] end
        cases[#cases + 1] = { a = a, b = b, x = x, y = y }
    end
    -- Decode rates of two systems, close and far apart, small and large n.
    for _, n in ipairs({ 3, 5, 6, 7, 10, 30, 31, 100, 400 }) do
        add(normal(n, 98.7, 1.2), normal(n + 3, 72.9, 2.5))
        add(normal(n, 50, 5), normal(math.max(3, n - 1), 50.8, 4))
    end
    -- Unequal sizes and spreads (Welch's degrees of freedom far from n - 2),
    -- times in seconds, a huge effect (a p-value around 1e-40).
    add(normal(12, 0.120, 0.004), normal(40, 0.090, 0.020))
    add(normal(30, 1000, 1), normal(30, 900, 1))
    -- A denominator too noisy for Fieller's set to be an interval.
    add(normal(8, 10, 1), normal(4, 0.5, 5))
    -- A drift: rising with noise, and no slope at all.
    local up = {}
    for i = 1, 60 do up[i] = 100 + 0.05 * i + (math.random() - 0.5) end
    add(up, normal(10, 1, 0.1))

    local tq, tt = {}, {}
    for _, df in ipairs({ 1, 2, 2.5, 4, 9, 29, 57.3, 120, 1000 }) do
        for _, p in ipairs({ 0.975, 0.995, 0.5, 0.6, 0.025, 0.9999 }) do tq[#tq + 1] = { p, df } end
        for _, t in ipairs({ 0, 0.3, 1.96, -2.5, 8, 40 }) do tt[#tt + 1] = { t, df } end
    end
    local want = scipy({ cases = cases, t_quantiles = tq, t_tails = tt })

    -- scipy's quantile (cephes' stdtrit) is itself accurate to about 1e-9
    -- (t.sf(t.ppf(0.975, 5), 5) is 0.02499999997): quantiles and the
    -- intervals built on them agree to 1e-8, the tails to 1e-10.
    it("computes Student's t quantiles and tails as scipy.stats.t does", function()
        for i, q in ipairs(tq) do
            close(stats.t_ppf(q[1], q[2]), want.t_quantiles[i], 1e-8, string.format("t.ppf(%g, %g)", q[1], q[2]))
        end
        for i, q in ipairs(tt) do
            close(stats.t_sf(q[1], q[2]), want.t_tails[i], 1e-10, string.format("t.sf(%g, %g)", q[1], q[2]))
        end
    end)

    it("summarizes a sample as numpy does (mean, median, stdev, CV, quantiles)", function()
        for i, c in ipairs(cases) do
            local w = want.cases[i]
            close(stats.mean(c.a), w.mean, 1e-12, "mean #" .. i)
            close(stats.median(c.a), w.median, 1e-12, "median #" .. i)
            close(stats.stdev(c.a), w.stdev, 1e-10, "stdev #" .. i)
            close(stats.cv(c.a), w.cv, 1e-10, "cv #" .. i)
            close(stats.quantile(c.a, 0.99), w.p99, 1e-12, "p99 #" .. i)
            close(stats.quantile(c.a, 0.05), w.p5, 1e-12, "p5 #" .. i)
        end
    end)

    it("gives the t interval of the mean and the order-statistic interval of the median", function()
        for i, c in ipairs(cases) do
            local w = want.cases[i]
            local lo, hi = stats.mean_ci(c.a)
            close(lo, w.mean_ci[1], 1e-8, "mean CI lo #" .. i)
            close(hi, w.mean_ci[2], 1e-8, "mean CI hi #" .. i)
            local mlo, mhi, cover = stats.median_ci(c.a)
            if w.median_ci == json.null then
                assert.is_nil(mlo, "median CI #" .. i .. " should not exist for n = " .. #c.a)
            else
                close(mlo, w.median_ci[1], 0, "median CI lo #" .. i)
                close(mhi, w.median_ci[2], 0, "median CI hi #" .. i)
                close(cover, w.median_ci[3], 1e-10, "median CI coverage #" .. i)
                assert.is_true(cover >= 0.95)
            end
        end
    end)

    it("gives Welch's t, its two-sided p-value and Cohen's d", function()
        for i, c in ipairs(cases) do
            local w = want.cases[i]
            local t, _, p = stats.welch(c.a, c.b)
            close(t, w.welch_t, 1e-10, "Welch t #" .. i)
            close(p, w.welch_p, 1e-8, "Welch p #" .. i)
            close(stats.cohens_d(c.a, c.b), w.cohens_d, 1e-10, "Cohen's d #" .. i)
        end
    end)

    it("gives Fieller's interval of a ratio of means (or none where it is unbounded)", function()
        local unbounded = 0
        for i, c in ipairs(cases) do
            local w = want.cases[i].fieller
            local r, lo, hi = stats.ratio_ci(c.a, c.b)
            close(r, w[1], 1e-12, "ratio #" .. i)
            close(lo, w[2], 1e-8, "ratio CI lo #" .. i)
            close(hi, w[3], 1e-8, "ratio CI hi #" .. i)
            if lo then assert.is_true(lo <= r and r <= hi) else unbounded = unbounded + 1 end
        end
        assert.is_true(unbounded >= 1, "the noisy-denominator case should have no interval")
    end)

    it("fits the drift line as scipy.stats.linregress does", function()
        for i, c in ipairs(cases) do
            local w = want.cases[i].linregress
            local r = stats.linregress(c.x, c.y)
            close(r.slope, w.slope, 1e-9, "slope #" .. i)
            close(r.intercept, w.intercept, 1e-9, "intercept #" .. i)
            close(r.r, w.r, 1e-9, "r #" .. i)
            close(r.p, w.p, 1e-8, "slope p #" .. i)
            close(r.stderr, w.stderr, 1e-8, "slope stderr #" .. i)
        end
        -- The rising series is a drift, significantly.
        assert.is_true(stats.linregress(cases[#cases].x, cases[#cases].y).p < 1e-6)
    end)
end)

describe("bench statistics on degenerate samples", function()
    it("returns nil, never NaN, where a figure does not exist", function()
        assert.is_nil(stats.mean({}))
        assert.is_nil(stats.stdev({ 5 }))
        assert.is_nil(stats.mean_ci({ 5 }))
        assert.is_nil(stats.median_ci({ 1, 2, 3, 4, 5 }))   -- 5 values cannot give 95%
        assert.is_nil(stats.welch({ 1 }, { 1, 2 }))
        assert.is_nil(stats.welch({ 2, 2 }, { 2, 2 }))      -- no spread at all
        assert.is_nil(stats.cohens_d({ 3, 3 }, { 3, 3 }))
        assert.is_nil(stats.cv({ 0, 0 }))
        assert.is_nil(stats.linregress({ 1, 1, 1 }, { 1, 2, 3 }))
        local s = stats.summary({})
        assert.equal(0, s.n)
        assert.is_nil(s.mean)
    end)

    it("treats a constant sample as exact", function()
        local s = stats.summary({ 7, 7, 7, 7, 7, 7, 7 })
        assert.equal(7, s.median)
        assert.equal(0, s.stdev)
        assert.equal(7, s.ci_lo)
        assert.equal(7, s.ci_hi)
        local r, lo, hi = stats.ratio_ci({ 4, 4, 4 }, { 2, 2, 2 })
        assert.equal(2, r)
        assert.equal(2, lo)
        assert.equal(2, hi)
    end)

    it("orients speedups so that above 1 means the first system is faster", function()
        local fast_rate, slow_rate = { 100, 101, 99, 100 }, { 50, 51, 49, 50 }
        assert.is_true(stats.compare(fast_rate, slow_rate, true).speedup > 1.9)
        local fast_time, slow_time = { 0.1, 0.11, 0.09, 0.1 }, { 0.2, 0.21, 0.19, 0.2 }
        assert.is_true(stats.compare(fast_time, slow_time, false).speedup > 1.9)
    end)
end)
