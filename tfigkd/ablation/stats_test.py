import math

import numpy as np
import pytest
from scipy import stats

from tfigkd.ablation.stats import (describe, holm, minimum_detectable_difference,
                                   paired_compare)

A = np.array([0.912, 0.915, 0.909, 0.921, 0.918, 0.913, 0.917, 0.911, 0.920, 0.916])
B = np.array([0.910, 0.911, 0.908, 0.915, 0.913, 0.912, 0.914, 0.907, 0.916, 0.915])


def test_paired_tests_are_scipys():
    c = paired_compare(A, B, seed=3, resamples=2000)
    assert c["n"] == 10
    assert c["mean_diff"] == pytest.approx(np.mean(A - B))
    assert c["t_p"] == pytest.approx(stats.ttest_rel(A, B).pvalue)
    assert c["wilcoxon_p"] == pytest.approx(stats.wilcoxon(A, B).pvalue)
    assert c["cohen_d"] == pytest.approx(np.mean(A - B) / np.std(A - B, ddof=1))
    ref = stats.bootstrap((A - B,), np.mean, n_resamples=2000, method="percentile",
                          random_state=np.random.default_rng(3)).confidence_interval
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert c["ci_low"] < c["mean_diff"] < c["ci_high"]
    # Same seed, same interval; the CI excludes 0 here and the tests agree.
    assert paired_compare(A, B, seed=3, resamples=2000)["ci_low"] == c["ci_low"]
    assert c["ci_low"] > 0 and c["t_p"] < 0.01


def test_holm_correction():
    # Sorted p: 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> monotone 0.06.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.02, float("nan"), 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)


def test_power_and_small_n_warnings():
    # n = 10, sd of differences 1: a paired t-test detects d ~ 0.996 with 80 % power.
    assert minimum_detectable_difference(1.0, 10) == pytest.approx(0.9957, abs=2e-3)
    assert minimum_detectable_difference(0.5, 10) == pytest.approx(0.5 * 0.9957, abs=2e-3)
    small = paired_compare(A[:4], B[:4])
    assert any("Wilcoxon test cannot reach" in w for w in small["warnings"])
    # Exact Wilcoxon with n = 5: even all-positive differences give p = 0.0625.
    assert paired_compare(A[:5] + 1, A[:5] + np.arange(5) * 1e-3)["wilcoxon_p"] >= 0.0625
    one = paired_compare([0.9], [0.8])
    assert math.isnan(one["t_p"]) and "no test" in one["warnings"][0]


def test_describe():
    d = describe(A, seed=1, resamples=2000)
    assert d["n"] == 10 and d["mean"] == pytest.approx(A.mean())
    assert d["sd"] == pytest.approx(A.std(ddof=1)) and d["min"] == A.min() and d["max"] == A.max()
    assert d["ci_low"] < d["mean"] < d["ci_high"]
