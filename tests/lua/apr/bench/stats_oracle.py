"""stats_oracle.py — the figures of lua/apr/bench/stats.lua, computed with
Debian's python3-scipy, for tests/lua/apr/bench/stats_spec.lua.

Reads {"cases": [{"a": [...], "b": [...], "x": [...], "y": [...]}, ...],
"t_quantiles": [[p, df], ...], "t_tails": [[t, df], ...]} on stdin and
prints the same structure of answers as JSON on stdout (null where scipy
gives NaN or the figure does not exist).
"""
import json
import math
import sys

import numpy as np
from scipy import stats


def num(x):
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def mean_ci(xs, level=0.95):
    xs = np.asarray(xs, dtype=float)
    lo, hi = stats.t.interval(level, len(xs) - 1, loc=xs.mean(), scale=stats.sem(xs))
    return [num(lo), num(hi)]


def median_ci(xs, level=0.95):
    # Order statistics x(k), x(n-k+1), k the largest rank with
    # P(X <= k-1) <= (1-level)/2 for X ~ Binomial(n, 1/2).
    n = len(xs)
    s = sorted(xs)
    k = 0
    while k + 1 <= (n + 1) // 2 and stats.binom.cdf(k, n, 0.5) <= (1 - level) / 2:
        k += 1
    if k < 1:
        return None
    return [s[k - 1], s[n - k], 1 - 2 * stats.binom.cdf(k - 1, n, 0.5)]


def fieller(a, b, level=0.95):
    # Fieller's interval for mean(a)/mean(b), independent samples, t at
    # Welch's degrees of freedom (the quantile from scipy).
    a, b = np.asarray(a, float), np.asarray(b, float)
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = stats.t.ppf(1 - (1 - level) / 2, df)
    qa = mb * mb - t * t * vb
    qb = -2 * ma * mb
    qc = ma * ma - t * t * va
    disc = qb * qb - 4 * qa * qc
    if qa <= 0 or disc < 0:
        return [ma / mb, None, None]
    r = math.sqrt(disc)
    return [ma / mb, (-qb - r) / (2 * qa), (-qb + r) / (2 * qa)]


def case(c):
    a, b = np.asarray(c["a"], float), np.asarray(c["b"], float)
    out = {
        "mean": num(a.mean()),
        "median": num(np.median(a)),
        "stdev": num(a.std(ddof=1)),
        "cv": num(a.std(ddof=1) / abs(a.mean())),
        "p99": num(np.quantile(a, 0.99)),
        "p5": num(np.quantile(a, 0.05)),
        "mean_ci": mean_ci(a),
        "median_ci": median_ci(list(a)),
        "fieller": fieller(a, b),
    }
    w = stats.ttest_ind(a, b, equal_var=False)
    out["welch_t"], out["welch_p"] = num(w.statistic), num(w.pvalue)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    out["cohens_d"] = num((a.mean() - b.mean()) / math.sqrt(pooled))
    r = stats.linregress(c["x"], c["y"])
    out["linregress"] = {"slope": num(r.slope), "intercept": num(r.intercept), "r": num(r.rvalue),
                         "p": num(r.pvalue), "stderr": num(r.stderr)}
    return out


def main():
    q = json.load(sys.stdin)
    print(json.dumps({
        "cases": [case(c) for c in q["cases"]],
        "t_quantiles": [num(stats.t.ppf(p, df)) for p, df in q["t_quantiles"]],
        "t_tails": [num(stats.t.sf(t, df)) for t, df in q["t_tails"]],
    }))


if __name__ == "__main__":
    main()
