-- bench/stats.lua — the statistics of `apr bench`: summaries of a sample,
-- confidence intervals, Welch's t-test, Cohen's d, the confidence interval
-- of a speedup (a ratio of means) and a drift test over time.
--
-- Written here because no maintained Lua statistics library exists (LuaRocks
-- has none that computes the t distribution's tails); the distribution
-- functions follow the textbook forms (Student's t through the regularized
-- incomplete beta function, evaluated by its continued fraction with
-- Lentz's method; log-gamma by Lanczos' approximation, g = 7, n = 9), and
-- tests/lua/apr/bench/stats_spec.lua checks every figure against Debian's
-- python3-scipy.
--
-- Conventions: samples are plain arrays of numbers; functions that cannot
-- give a figure (too few values, zero variance) return nil, never NaN, so
-- that what reaches the JSON report is a number or null.
local M = {}

local abs, sqrt, exp, log, floor, huge = math.abs, math.sqrt, math.exp, math.log, math.floor, math.huge

------------------------------------------------------------------ a sample

function M.mean(xs)
    local n = #xs
    if n == 0 then return nil end
    local s = 0
    for i = 1, n do s = s + xs[i] end
    return s / n
end

-- Sample variance (n - 1 in the denominator, as numpy's ddof=1), by the
-- two-pass formula: subtracting the mean first keeps the digits that the
-- one-pass sum of squares loses on large, close values (decode rates).
function M.variance(xs)
    local n = #xs
    if n < 2 then return nil end
    local m, s = M.mean(xs), 0
    for i = 1, n do
        local d = xs[i] - m
        s = s + d * d
    end
    return s / (n - 1)
end

function M.stdev(xs)
    local v = M.variance(xs)
    return v and sqrt(v)
end

function M.sorted(xs)
    local s = {}
    for i = 1, #xs do s[i] = xs[i] end
    table.sort(s)
    return s
end

-- The q-quantile (0 <= q <= 1) by linear interpolation between the order
-- statistics (numpy's default, Hyndman and Fan's type 7). sorted: xs is
-- already in order.
function M.quantile(xs, q, sorted)
    local n = #xs
    if n == 0 then return nil end
    local s = sorted and xs or M.sorted(xs)
    local h = (n - 1) * q + 1
    local lo = floor(h)
    if lo >= n then return s[n] end
    return s[lo] + (h - lo) * (s[lo + 1] - s[lo])
end

function M.median(xs) return M.quantile(xs, 0.5) end

-- Coefficient of variation: stdev / mean (a fraction, not a percentage).
function M.cv(xs)
    local m, sd = M.mean(xs), M.stdev(xs)
    if not m or not sd or m == 0 then return nil end
    return sd / abs(m)
end

------------------------------------------------------------------ distributions

-- log Γ(x) for x > 0 (Lanczos, g = 7: relative error below 1e-15).
local LANCZOS = {
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
    -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
    1.5056327351493116e-7,
}
function M.lgamma(x)
    if x < 0.5 then
        -- Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        return log(math.pi / abs(math.sin(math.pi * x))) - M.lgamma(1 - x)
    end
    x = x - 1
    local a = LANCZOS[1]
    local t = x + 7.5
    for i = 2, 9 do a = a + LANCZOS[i] / (x + i - 1) end
    return 0.5 * log(2 * math.pi) + (x + 0.5) * log(t) - t + log(a)
end

-- The continued fraction of the incomplete beta function (modified Lentz).
local function betacf(a, b, x)
    local tiny, eps = 1e-300, 1e-16
    local qab, qap, qam = a + b, a + 1, a - 1
    local c, d = 1, 1 - qab * x / qap
    if abs(d) < tiny then d = tiny end
    d = 1 / d
    local h = d
    for m = 1, 10000 do
        local m2 = 2 * m
        local aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        if abs(d) < tiny then d = tiny end
        c = 1 + aa / c
        if abs(c) < tiny then c = tiny end
        d = 1 / d
        h = h * d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        if abs(d) < tiny then d = tiny end
        c = 1 + aa / c
        if abs(c) < tiny then c = tiny end
        d = 1 / d
        local del = d * c
        h = h * del
        if abs(del - 1) < eps then break end
    end
    return h
end

-- The regularized incomplete beta function I_x(a, b), 0 <= x <= 1.
function M.betainc(a, b, x)
    if x <= 0 then return 0 end
    if x >= 1 then return 1 end
    local front = exp(M.lgamma(a + b) - M.lgamma(a) - M.lgamma(b) + a * log(x) + b * log(1 - x))
    -- The fraction converges fast for x below the mean a / (a + b); above
    -- it, the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1) / (a + b + 2) then
        return front * betacf(a, b, x) / a
    end
    return 1 - front * betacf(b, a, 1 - x) / b
end

-- P(T > t) for Student's t with df degrees of freedom (df may be fractional,
-- as Welch's is). For t > 0 the tail is I_x(df/2, 1/2) / 2 with
-- x = df / (df + t²), computed directly so that tiny p-values keep their
-- digits instead of being 1 - (something close to 1).
function M.t_sf(t, df)
    if t ~= t then return nil end
    if t == huge then return 0 elseif t == -huge then return 1 end
    local tail = 0.5 * M.betainc(df / 2, 0.5, df / (df + t * t))
    if t >= 0 then return tail end
    return 1 - tail
end

function M.t_cdf(t, df) return 1 - M.t_sf(t, df) end

function M.t_pdf(t, df)
    return exp(M.lgamma((df + 1) / 2) - M.lgamma(df / 2) - 0.5 * log(df * math.pi)
        - (df + 1) / 2 * log(1 + t * t / df))
end

-- The p-quantile of Student's t (0 < p < 1): bisection to a bracket, then
-- Newton's method on the distribution function, to full double precision.
function M.t_ppf(p, df)
    if p <= 0 or p >= 1 then return nil end
    if p == 0.5 then return 0 end
    if p < 0.5 then return -M.t_ppf(1 - p, df) end
    local lo, hi = 0, 1
    while M.t_cdf(hi, df) < p do
        lo, hi = hi, hi * 2
        if hi > 1e300 then return huge end
    end
    for _ = 1, 60 do
        local mid = (lo + hi) / 2
        if M.t_cdf(mid, df) < p then lo = mid else hi = mid end
        if hi - lo < 1e-3 * hi then break end
    end
    local t = (lo + hi) / 2
    for _ = 1, 50 do
        -- The upper tail's error, to keep precision for p close to 1.
        local step = (M.t_sf(t, df) - (1 - p)) / M.t_pdf(t, df)
        t = t + step
        if abs(step) <= 1e-15 * abs(t) then break end
    end
    return t
end

-- P(X <= k) for X ~ Binomial(n, 1/2), summed in logs (n in the thousands is
-- fine: a run count, not a population).
function M.binom_half_cdf(k, n)
    if k < 0 then return 0 end
    if k >= n then return 1 end
    local s = 0
    local lgn1 = M.lgamma(n + 1)
    for i = 0, k do
        s = s + exp(lgn1 - M.lgamma(i + 1) - M.lgamma(n - i + 1) - n * log(2))
    end
    return s
end

------------------------------------------------------------------ intervals

-- The confidence interval of the mean, Student's t with n - 1 degrees of
-- freedom: lo, hi (nil with fewer than two values).
function M.mean_ci(xs, level)
    level = level or 0.95
    local n = #xs
    if n < 2 then return nil end
    local m, sd = M.mean(xs), M.stdev(xs)
    local half = M.t_ppf(1 - (1 - level) / 2, n - 1) * sd / sqrt(n)
    return m - half, m + half
end

-- The distribution-free confidence interval of the median (the order
-- statistics x(k) and x(n-k+1) with k the largest rank whose binomial tail
-- P(X <= k - 1) stays within (1 - level) / 2; Hoefler and Belli 2015,
-- section 3.1.3). Returns lo, hi, the interval's exact coverage; nil when n
-- is too small for the level (below 6 values at 95%).
function M.median_ci(xs, level)
    level = level or 0.95
    local n = #xs
    local alpha2 = (1 - level) / 2
    local k = 0
    while k + 1 <= floor((n + 1) / 2) and M.binom_half_cdf(k, n) <= alpha2 do k = k + 1 end
    if k < 1 then return nil end
    local s = M.sorted(xs)
    return s[k], s[n - k + 1], 1 - 2 * M.binom_half_cdf(k - 1, n)
end

------------------------------------------------------------------ two samples

-- Welch's t-test of equal means (unequal variances): t, df, two-sided p.
-- nil when either sample has fewer than two values or both have no spread.
function M.welch(a, b)
    local na, nb = #a, #b
    if na < 2 or nb < 2 then return nil end
    local va, vb = M.variance(a) / na, M.variance(b) / nb
    local se2 = va + vb
    if se2 == 0 then return nil end
    local t = (M.mean(a) - M.mean(b)) / sqrt(se2)
    local df = se2 * se2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    return t, df, 2 * M.t_sf(abs(t), df)
end

-- Cohen's d: the difference of the means over the pooled standard deviation.
function M.cohens_d(a, b)
    local na, nb = #a, #b
    if na < 2 or nb < 2 then return nil end
    local pooled = ((na - 1) * M.variance(a) + (nb - 1) * M.variance(b)) / (na + nb - 2)
    if pooled == 0 then return nil end
    return (M.mean(a) - M.mean(b)) / sqrt(pooled)
end

-- The ratio of the means mean(a) / mean(b) with Fieller's confidence
-- interval for independent samples: the set of R for which
-- (ma - R mb)² <= t² (va + R² vb), with va, vb the squared standard errors
-- and t at Welch's degrees of freedom. Returns ratio, lo, hi; lo and hi are
-- nil when mean(b) is not clearly away from zero (then the set is not an
-- interval).
function M.ratio_ci(a, b, level)
    level = level or 0.95
    local na, nb = #a, #b
    if na < 2 or nb < 2 then return nil end
    local ma, mb = M.mean(a), M.mean(b)
    if mb == 0 then return nil end
    local va, vb = M.variance(a) / na, M.variance(b) / nb
    local ratio = ma / mb
    local denom = va * va / (na - 1) + vb * vb / (nb - 1)
    if denom == 0 then return ratio, ratio, ratio end
    local df = (va + vb) ^ 2 / denom
    local t = M.t_ppf(1 - (1 - level) / 2, df)
    local t2 = t * t
    -- (mb² - t² vb) R² - 2 ma mb R + (ma² - t² va) <= 0
    local qa = mb * mb - t2 * vb
    if qa <= 0 then return ratio end
    local qb = -2 * ma * mb
    local qc = ma * ma - t2 * va
    local disc = qb * qb - 4 * qa * qc
    if disc < 0 then return ratio end
    local r = sqrt(disc)
    return ratio, (-qb - r) / (2 * qa), (-qb + r) / (2 * qa)
end

------------------------------------------------------------------ drift

-- Least-squares line of y on x with the two-sided test of a zero slope (t
-- with n - 2 degrees of freedom): { slope, intercept, r, p, stderr }; nil
-- with fewer than three points or no spread in x.
function M.linregress(x, y)
    local n = #x
    if n < 3 or #y ~= n then return nil end
    local mx, my = M.mean(x), M.mean(y)
    local sxx, sxy, syy = 0, 0, 0
    for i = 1, n do
        local dx, dy = x[i] - mx, y[i] - my
        sxx, sxy, syy = sxx + dx * dx, sxy + dx * dy, syy + dy * dy
    end
    if sxx == 0 then return nil end
    local slope = sxy / sxx
    local r = syy > 0 and sxy / sqrt(sxx * syy) or 0
    if r > 1 then r = 1 elseif r < -1 then r = -1 end
    local df = n - 2
    local p, se
    if abs(r) == 1 then
        p, se = 0, 0
    else
        local tstat = r * sqrt(df / ((1 - r) * (1 + r)))
        p = 2 * M.t_sf(abs(tstat), df)
        se = sqrt((1 - r * r) * syy / sxx / df)
    end
    return { slope = slope, intercept = my - slope * mx, r = r, p = p, stderr = se }
end

------------------------------------------------------------------ summaries

-- Everything the report gives for one metric's sample.
function M.summary(xs, level)
    level = level or 0.95
    local s = { n = #xs }
    if #xs == 0 then return s end
    local sorted = M.sorted(xs)
    s.mean, s.median, s.stdev, s.cv = M.mean(xs), M.quantile(sorted, 0.5, true), M.stdev(xs), M.cv(xs)
    s.min, s.max = sorted[1], sorted[#sorted]
    s.p5, s.p95 = M.quantile(sorted, 0.05, true), M.quantile(sorted, 0.95, true)
    s.ci_lo, s.ci_hi = M.mean_ci(xs, level)
    s.median_ci_lo, s.median_ci_hi = M.median_ci(xs, level)
    return s
end

-- The comparison of a system's sample a with a baseline's b for a metric
-- where higher_is_better says which way is better. Every figure is turned
-- so that it favours a when positive (t, Cohen's d) or above 1 (speedup):
-- speedup is mean(a)/mean(b) for rates, mean(b)/mean(a) for times.
function M.compare(a, b, higher_is_better, level)
    local c = {}
    local better, worse = a, b
    if not higher_is_better then better, worse = b, a end
    local t, df, p = M.welch(better, worse)
    c.t, c.df, c.p = t, df, p
    c.cohens_d = M.cohens_d(better, worse)
    c.speedup, c.speedup_ci_lo, c.speedup_ci_hi = M.ratio_ci(better, worse, level)
    return c
end

return M
