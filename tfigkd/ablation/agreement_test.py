import numpy as np
import pytest

from tfigkd.ablation.agreement import spearman, topk_iou
from tfigkd.augment.controls import noise_maps, shuffled_maps


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    centres = rng.integers(3, 13, size=(20, 2))
    return np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0) + 0.01 * rng.random((16, 16))
                     for cy, cx in centres]).astype(np.float32)


def test_identical_maps_agree_fully(maps):
    assert spearman(maps, maps) == pytest.approx(1.0)
    assert topk_iou(maps, maps, 0.1) == pytest.approx(1.0)


def test_permuted_pixels_agree_little(maps):
    rng = np.random.default_rng(1)
    perm = rng.permutation(16 * 16)
    scrambled = maps.reshape(20, -1)[:, perm].reshape(maps.shape)
    assert abs(spearman(maps, scrambled)) < 0.2
    assert topk_iou(maps, scrambled, 0.1) < 0.2
    # Another image's map (peak elsewhere) is between the two.
    assert topk_iou(maps, np.roll(maps, 1, axis=0)) < 0.6


def test_topk_selects_exactly_k_percent():
    a = np.zeros((1, 10, 10))
    a[0, 0, :5] = 1.0
    b = np.zeros((1, 10, 10))
    b[0, 0, 5:] = 1.0
    assert topk_iou(a, b, 0.05) == 0.0
    assert topk_iou(a, a, 0.05) == 1.0


def test_shuffled_control_is_a_derangement(maps):
    out = shuffled_maps(maps, seed=4)
    assert not any(np.array_equal(out[i], maps[i]) for i in range(len(maps)))
    assert sorted(m.tobytes() for m in out) == sorted(m.tobytes() for m in maps)
    np.testing.assert_array_equal(out, shuffled_maps(maps, seed=4))
    assert not np.array_equal(out, shuffled_maps(maps, seed=5))


def test_noise_control_keeps_values_not_layout(maps):
    out = noise_maps(maps, seed=2)
    for m, o in zip(maps, out):
        np.testing.assert_array_equal(np.sort(m, axis=None), np.sort(o, axis=None))
    assert spearman(out, maps) < 0.3
    np.testing.assert_array_equal(out, noise_maps(maps, seed=2))
