import numpy as np

from tfigkd.data import Subset, fingerprint, stratified_split, stratified_subset


def _labels(n=1000, classes=10, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


def test_split_is_deterministic_disjoint_and_complete():
    y = _labels()
    a_keep, a_held = stratified_split(y, 0.1, seed=3)
    b_keep, b_held = stratified_split(y, 0.1, seed=3)
    np.testing.assert_array_equal(a_held, b_held)
    assert not set(a_keep) & set(a_held)
    assert sorted(set(a_keep) | set(a_held)) == list(range(len(y)))
    _, c_held = stratified_split(y, 0.1, seed=4)
    assert set(c_held) != set(a_held)


def test_split_is_stratified():
    y = _labels()
    _, held = stratified_split(y, 0.2, seed=0)
    for c in range(10):
        assert abs((y[held] == c).sum() - 0.2 * (y == c).sum()) <= 0.5 + 1e-9


def test_subset_size_and_stratification():
    y = _labels(5000)
    pos = stratified_subset(y, 777, seed=1)
    assert len(pos) == len(set(pos)) == 777
    frac = np.bincount(y[pos], minlength=10) / np.bincount(y, minlength=10)
    assert frac.max() - frac.min() < 0.03


def _subset(seed=0):
    rng = np.random.default_rng(seed)
    return Subset(rng.integers(0, 256, (20, 4, 4, 1), dtype=np.uint8),
                  rng.integers(0, 3, 20), np.arange(100, 120))


def test_fingerprint_stable_and_order_free():
    s = _subset()
    assert fingerprint(s) == fingerprint(_subset())
    perm = np.random.default_rng(1).permutation(20)
    assert fingerprint(s.take(perm)) == fingerprint(s)  # hashed in index order


def test_fingerprint_changes_with_pixels_labels_or_indices():
    base = fingerprint(_subset())
    s = _subset(); s.x[3, 0, 0, 0] ^= 1
    assert fingerprint(s) != base
    s = _subset(); s.y[5] = (s.y[5] + 1) % 3
    assert fingerprint(s) != base
    s = _subset(); s.index[0] = 999
    assert fingerprint(s) != base
