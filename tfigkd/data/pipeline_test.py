import numpy as np
import tensorflow as tf

from tfigkd.data import Subset, apply_geometry, make_dataset, normalize


def _subset(n=10, shape=(6, 6, 1)):
    x = np.arange(n * np.prod(shape), dtype=np.int64).reshape(n, *shape) % 251
    return Subset(x.astype(np.uint8), np.arange(n) % 3, np.arange(100, 100 + n))


def test_apply_geometry_matches_numpy_reference():
    img = np.random.default_rng(0).integers(0, 255, (2, 5, 5, 2)).astype(np.float32)
    geo = {"oy": tf.constant([0, 3]), "ox": tf.constant([2, 1]), "flip": tf.constant([False, True])}
    out = apply_geometry(tf.constant(img), geo, pad=2).numpy()
    padded = np.pad(img, [(0, 0), (2, 2), (2, 2), (0, 0)])
    ref0 = padded[0, 0:5, 2:7]
    ref1 = padded[1, 3:8, 1:6][:, ::-1]
    np.testing.assert_array_equal(out[0], ref0)
    np.testing.assert_array_equal(out[1], ref1)


def test_normalize_modes():
    x = tf.constant([[[[0, 255]]]], tf.uint8)
    np.testing.assert_allclose(normalize(x, "unit").numpy(), [[[[0, 1]]]])
    out = normalize(x, "dataset", (0.5, 0.5), (0.25, 0.5)).numpy()
    np.testing.assert_allclose(out, [[[[-2.0, 1.0]]]])


def test_eval_pipeline_keeps_order_and_values():
    s = _subset()
    ds = make_dataset(s, batch_size=4, training=False, input_norm="unit", with_index=True)
    feats = [f for f, _ in ds]
    idx = np.concatenate([f["index"].numpy() for f in feats])
    np.testing.assert_array_equal(idx, s.index)
    x = np.concatenate([f["image"].numpy() for f in feats])
    np.testing.assert_allclose(x, s.x / 255.0, rtol=1e-6)


def test_training_pipeline_is_seeded_and_labels_follow_images():
    s = _subset(12)

    def run(seed):
        ds = make_dataset(s, batch_size=5, training=True, seed=seed, crop_pad=1, with_index=True)
        return [(f["index"].numpy(), f["image"].numpy(), y.numpy()) for f, y in ds]

    a, b, c = run(1), run(1), run(2)
    for (ia, xa, _), (ib, xb, _) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    for idx, _, y in a:
        np.testing.assert_array_equal(y, s.y[idx - 100])
    assert sorted(np.concatenate([i for i, _, _ in a])) == list(s.index)


def test_any_hwc_shape_augments():
    s = Subset(np.zeros((4, 9, 7, 3), np.uint8), np.zeros(4, np.int64), np.arange(4))
    x, _ = next(iter(make_dataset(s, batch_size=4, training=True, crop_pad=4)))
    assert x.shape == (4, 9, 7, 3)


def test_pipelines_run_without_runtime_autotuning():
    # The autotuner's background work cost teacher inference a third of its speed on
    # 2 cores in about half the runs (benchmarks/teacher_inference.py).
    s = _subset()
    for ds in (make_dataset(s, batch_size=4, training=False),
               make_dataset(s, batch_size=4, training=True, num_epochs=2, with_view=True)):
        assert ds.options().autotune.enabled is False
