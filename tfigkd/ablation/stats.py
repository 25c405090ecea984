"""Statistics of an ablation: per-mode summaries and paired comparisons between modes.

Runs of different modes with the same seed (and Monte Carlo subset) share
the student's initialisation, data order and augmentation, so modes are
compared *paired*: on the per-seed differences. Tests come from SciPy (paired
t-test, Wilcoxon signed-rank, bootstrap) and statsmodels (Holm correction,
power); nothing is hand-written.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
# The smallest n at which an exact two-sided Wilcoxon signed-rank test can
# give p < 0.05 (with n = 5 the smallest p is 2/32 = 0.0625).
WILCOXON_MIN_N = 6


def _bootstrap_mean_ci(values, seed, resamples):
    values = np.asarray(values, float)
    if len(values) < 2 or np.all(values == values[0]):
        v = float(values.mean()) if len(values) else math.nan
        return v, v
    res = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def describe(values, seed=0, resamples=9999):
    """Mean, sd (n - 1), min, max and a percentile-bootstrap 95 % CI of the mean."""
    v = np.asarray(values, float)
    lo, hi = _bootstrap_mean_ci(v, seed, resamples)
    return {"n": int(len(v)), "mean": float(v.mean()) if len(v) else math.nan,
            "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            "min": float(v.min()) if len(v) else math.nan,
            "max": float(v.max()) if len(v) else math.nan, "ci_low": lo, "ci_high": hi}


def paired_compare(a, b, seed=0, resamples=9999):
    """Compares paired samples ``a`` and ``b`` (same order = same seed / subset).

    Returns:
        ``n``, ``mean_diff`` (a - b), a bootstrap 95 % CI of it, the paired
        t-test p (``t_p``), the Wilcoxon signed-rank p (``wilcoxon_p``),
        Cohen's d of the differences (mean / sd, "d_z"), the smallest
        difference detectable with 80 % power at alpha 0.05 given the observed
        sd of the differences (``mde``), and ``warnings`` about low power.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    d = a - b
    n = int(len(d))
    out = {"n": n, "mean_diff": float(d.mean()) if n else math.nan, "warnings": []}
    out["ci_low"], out["ci_high"] = _bootstrap_mean_ci(d, seed, resamples)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        out.update(t_p=math.nan, wilcoxon_p=math.nan, cohen_d=math.nan, mde=math.nan)
        out["warnings"].append(f"n = {n}: no test is possible")
        return out
    if sd == 0:
        # Identical differences: no spread to test against.
        same = bool(np.all(d == 0))
        out.update(t_p=1.0 if same else 0.0, wilcoxon_p=1.0 if same else math.nan,
                   cohen_d=0.0 if same else math.copysign(math.inf, d[0]), mde=0.0)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["t_p"] = float(stats.ttest_rel(a, b).pvalue)
        out["wilcoxon_p"] = (float(stats.wilcoxon(a, b).pvalue) if np.any(d != 0) else 1.0)
    out["cohen_d"] = float(d.mean() / sd)
    out["mde"] = minimum_detectable_difference(sd, n)
    if n < WILCOXON_MIN_N:
        out["warnings"].append(f"n = {n} < {WILCOXON_MIN_N}: the Wilcoxon test cannot reach "
                               f"p < {ALPHA}")
    if abs(out["mean_diff"]) < out["mde"]:
        out["warnings"].append(f"the difference is below the {out['mde']:.4f} this run can "
                               f"detect with {POWER:.0%} power")
    return out


def minimum_detectable_difference(sd, n, alpha=ALPHA, power=POWER):
    """The paired difference a two-sided t-test detects with ``power`` at ``alpha``.

    Solved with statsmodels' ``TTestPower`` (one-sample t-test on the
    differences) and scaled by their standard deviation.
    """
    from statsmodels.stats.power import TTestPower

    if n < 2 or not sd or math.isnan(sd):
        return math.nan
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                      alternative="two-sided")
    return float(effect * sd)


def holm(pvalues):
    """Holm-corrected p-values (NaN entries are left as NaN and not counted)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out.tolist()
