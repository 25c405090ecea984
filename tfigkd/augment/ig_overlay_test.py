import math

import numpy as np
import tensorflow as tf

from tfigkd.augment import IGOverlay, ig_overlay, overlay_transform
from tfigkd.data import Subset, make_dataset


def _numpy_overlay(images, maps, s, apply, weight=0.5):
    m = maps ** s[:, None, None]
    mn = m.min(axis=(1, 2), keepdims=True)
    mx = m.max(axis=(1, 2), keepdims=True)
    m = ((m - mn) / np.where(mx > mn, mx - mn, 1))[..., None]
    out = (1 - weight) * images + weight * m
    return np.where(apply[:, None, None, None], out, images)


def _batch(b=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(b, 5, 4, 3)).astype(np.float32),
            rng.gamma(1.0, size=(b, 5, 4)).astype(np.float32))


def test_matches_numpy_reference():
    images, maps = _batch()
    seed = tf.constant([3, 4], tf.int64)
    out = ig_overlay(images, maps, seed, p=0.5).numpy()
    # Replay the same random draws as the implementation.
    s_seed, p_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    s = np.exp(tf.random.stateless_uniform([6], s_seed, 0.0, math.log(2.0)).numpy())
    apply = tf.random.stateless_uniform([6], p_seed).numpy() < 0.5
    assert 0 < apply.sum() < 6
    np.testing.assert_allclose(out, _numpy_overlay(images, maps, s, apply), rtol=1e-5, atol=1e-6)
    assert np.all((1 <= s) & (s <= 2))


def test_p0_is_identity_and_p1_always_overlays():
    images, maps = _batch(32)
    np.testing.assert_array_equal(ig_overlay(images, maps, [1, 2], p=0.0).numpy(), images)
    out = ig_overlay(images, maps, [1, 2], p=1.0).numpy()
    changed = np.abs(out - images).reshape(32, -1).max(1) > 0
    assert changed.all()
    # Every overlaid image has a map pixel at 1 and one at 0: the blend spans 0.5 apart.
    diff = (out - 0.5 * images)[..., 0].reshape(32, -1)
    np.testing.assert_allclose(diff.max(1), 0.5, rtol=1e-5)
    np.testing.assert_allclose(diff.min(1), 0.0, atol=1e-6)


def test_seeded_and_reproducible():
    images, maps = _batch()
    a = ig_overlay(images, maps, [5, 6], p=0.5).numpy()
    b = ig_overlay(images, maps, [5, 6], p=0.5).numpy()
    np.testing.assert_array_equal(a, b)




def test_every_image_gets_its_own_map_after_shuffle_and_batching():
    # Images are black; the map is 1 only at one pixel whose position encodes
    # the example index, so the overlaid image reveals which map it got.
    n, h, w = 40, 8, 8
    subset = Subset(np.zeros((n, h, w, 1), np.uint8), np.zeros(n, np.int64),
                    np.random.default_rng(0).permutation(5000)[:n])
    maps = np.zeros((n, h, w), np.float32)
    for i, idx in enumerate(subset.index):
        maps[i, (idx // w) % h, idx % w] = 1.0
    ds = make_dataset(subset, batch_size=7, training=True, crop_pad=0, flip=False, seed=3,
                      with_index=True, extras={"ig_map": maps},
                      batch_transform=overlay_transform(p=1.0))
    seen = 0
    for feats, _ in ds:
        for img, idx in zip(feats["image"].numpy(), feats["index"].numpy()):
            r, c = np.unravel_index(np.argmax(img[..., 0]), (h, w))
            assert (r, c) == ((idx // w) % h, idx % w)
            seen += 1
    assert seen == n


def test_align_geometry_moves_the_map_with_the_image():
    n, h, w = 16, 8, 8
    x = np.zeros((n, h, w, 1), np.uint8)
    x[:, 2, 5] = 255  # a bright pixel in the image ...
    maps = np.zeros((n, h, w), np.float32)
    maps[:, 2, 5] = 1.0  # ... and the map's peak in the same place
    subset = Subset(x, np.zeros(n, np.int64), np.arange(n))

    def peaks(align):
        ds = make_dataset(subset, batch_size=8, training=True, crop_pad=2, flip=True, seed=1,
                          extras={"ig_map": maps},
                          batch_transform=overlay_transform(p=1.0, align_geometry=align, crop_pad=2))
        imgs = np.concatenate([b.numpy() for b, _ in ds])[..., 0]
        # With alignment, image pixel (1.0 * 0.5) and map (0.5) add up to 1 at one place.
        return imgs.reshape(n, -1).max(1)

    np.testing.assert_allclose(peaks(True), 1.0, rtol=1e-6)
    assert (peaks(False) < 0.99).any()


def test_keras_layer_only_in_training():
    images, maps = _batch()
    layer = IGOverlay(p=1.0, seed=1)
    np.testing.assert_array_equal(layer([images, maps], training=False).numpy(), images)
    assert not np.allclose(layer([images, maps], training=True).numpy(), images)
    assert IGOverlay.from_config(layer.get_config()).p == 1.0
