import numpy as np
import pytest

from tfigkd.data.split import Subset
from tfigkd.distill.logit_cache import (LogitCacheMismatchError, load_logits, write_logits)


def _subset(n=20, seed=0):
    rng = np.random.default_rng(seed)
    index = rng.permutation(1000)[:n].astype(np.int64)  # sparse, unordered indices
    return Subset(np.zeros((n, 4, 4, 1), np.uint8), np.zeros(n, np.int64), index)


def _logits_encoding_index(subset):
    # Each row encodes its own example index, so any misalignment shows.
    return np.stack([subset.index.astype(np.float32), -subset.index.astype(np.float32)], 1)


def test_round_trip_joins_by_index(tmp_path):
    sub = _subset()
    write_logits(str(tmp_path), sub, _logits_encoding_index(sub), "fp", "teach", "dataset")
    # Read back for the same examples in another order: rows follow the examples.
    perm = np.random.default_rng(1).permutation(len(sub))
    other = sub.take(perm)
    got = load_logits(str(tmp_path), other, "fp", "teach")
    np.testing.assert_array_equal(got[:, 0], other.index.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (len(sub), 2)


@pytest.mark.parametrize("fingerprint,teacher,match", [
    ("other", "teach", "other data"), ("fp", "other", "another teacher")])
def test_refuses_other_data_or_teacher(tmp_path, fingerprint, teacher, match):
    sub = _subset()
    write_logits(str(tmp_path), sub, _logits_encoding_index(sub), "fp", "teach", "dataset")
    with pytest.raises(LogitCacheMismatchError, match=match):
        load_logits(str(tmp_path), sub, fingerprint, teacher)


def test_refuses_corrupt_missing_and_unknown_examples(tmp_path):
    sub = _subset()
    with pytest.raises(LogitCacheMismatchError, match="manifest.json missing"):
        load_logits(str(tmp_path), sub, "fp", "teach")
    write_logits(str(tmp_path), sub.take(np.arange(10)), _logits_encoding_index(sub)[:10],
                 "fp", "teach", "dataset")
    with pytest.raises(LogitCacheMismatchError, match="no logits for 10 training examples"):
        load_logits(str(tmp_path), sub, "fp", "teach")
    with open(tmp_path / "logits.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(LogitCacheMismatchError, match="corrupt"):
        load_logits(str(tmp_path), sub, "fp", "teach")


def test_shape_is_checked(tmp_path):
    sub = _subset()
    with pytest.raises(ValueError, match="logits must be"):
        write_logits(str(tmp_path), sub, np.zeros((3, 2)), "fp", "teach", "unit")


def test_compute_logits_is_each_teachers_own_forward_pass():
    """The traced forward pass is kept per teacher: a second teacher must not reuse the first's."""
    import keras

    from tfigkd.distill.logit_cache import compute_logits

    rng = np.random.default_rng(0)
    sub = Subset(rng.integers(0, 256, (37, 4, 4, 1)).astype(np.uint8), np.zeros(37, np.int64),
                 np.arange(37, dtype=np.int64))
    teachers = []  # both alive: a cache keyed wrongly would hand the second the first's
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((4, 4, 1))
        teacher = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
        teachers.append(teacher)
        got = compute_logits(teacher, sub, "unit", None, None, batch_size=16)  # last batch: 5
        want = teacher(sub.x.astype(np.float32) / 255.0, training=False).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
