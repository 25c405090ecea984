"""What a mode turns on must reach training: the overlay at rate p, the teacher's
logits (online or cached), the attention-transfer term. Paired modes see the same data.

These tests go through ``build_distillation``, the builder ``train_student``
and the benchmarks use, so switching any piece off there fails here.
"""

import dataclasses

import keras
import numpy as np
import pytest
from scipy import stats

from tfigkd.testing import tiny_run_config
from tfigkd.config import config_from_dict
from tfigkd.data import load_splits
from tfigkd.experiments.common import steps_per_epoch
from tfigkd.experiments.student import build_distillation
from tfigkd.models import build_model


@pytest.fixture(scope="module")
def setup(toy_npz):
    cfg = config_from_dict(tiny_run_config(toy_npz))
    splits = load_splits(cfg.data)
    rng = np.random.default_rng(0)
    maps = rng.random((len(splits.train), *splits.input_shape[:2])).astype(np.float16)
    return cfg, splits, maps


def _with(cfg, **student):
    return dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, **student))


def _epoch_images(cfg, splits, mode, maps, epoch=0):
    _, data = build_distillation(cfg, splits, mode, seed=3, maps=maps)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data(epoch, 1)])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_overlay_reaches_training_at_rate_p(setup, p):
    cfg, splits, maps = setup
    cfg = _with(cfg, p=p)
    plain_x, plain_y = _epoch_images(cfg, splits, "student", maps)
    changed = 0
    total = 0
    for epoch in range(4):
        px, py = _epoch_images(cfg, splits, "student", maps, epoch)
        ox, oy = _epoch_images(cfg, splits, "ig", maps, epoch)
        # Pairing: same examples in the same order with the same crops and flips.
        np.testing.assert_array_equal(py, oy)
        diff = np.abs(px - ox).reshape(len(px), -1).max(1) > 1e-6
        changed += int(diff.sum())
        total += len(diff)
    if p == 1.0:
        assert changed == total
    else:
        # Overlaid images follow Binomial(total, p): a two-sided test, not a hand-set band.
        assert stats.binomtest(changed, total, p).pvalue > 1e-3, (changed, total)
        assert 0 < changed < total
    # Without the overlay the same seed gives the same batches.
    np.testing.assert_array_equal(plain_x, _epoch_images(cfg, splits, "student", maps)[0])


def _constant_teacher(shape, classes, favourite):
    """A teacher whose logits always favour one class, whatever the image."""
    inp = keras.Input(shape)
    dense = keras.layers.Dense(classes, kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(
                                   [8.0 if c == favourite else 0.0 for c in range(classes)]))
    return keras.Model(inp, dense(keras.layers.Flatten()(inp)))


def _train(cfg, splits, mode, epochs=6, **kw):
    distiller, data = build_distillation(cfg, splits, mode, seed=0, **kw)
    hist = distiller.fit(data(0, epochs), epochs=epochs, verbose=0,
                         steps_per_epoch=steps_per_epoch(len(splits.train),
                                                         cfg.student.train.batch_size))
    x = splits.val.x.astype("float32") / 255.0
    return distiller, hist.history, np.argmax(distiller.student.predict(x, verbose=0), -1)


def test_online_teacher_reaches_training(setup):
    cfg, splits, _ = setup
    cfg = _with(cfg, alpha=1.0, temperature=1.0)  # pure KD: the student copies the teacher
    teacher = _constant_teacher(splits.input_shape, splits.num_classes, favourite=2)
    _, hist, pred = _train(cfg, splits, "kd", teacher=teacher)
    assert np.mean(pred == 2) > 0.9
    assert min(hist["kd"]) > 0
    _, hist, pred = _train(cfg, splits, "student", teacher=teacher)
    assert np.mean(pred == 2) < 0.6  # without KD it learns the labels instead
    assert "kd" not in hist  # no KD term in this mode, so none is logged


def test_cached_logits_reach_training_instead_of_the_teacher(setup):
    cfg, splits, _ = setup
    cfg = _with(cfg, alpha=1.0, temperature=1.0, teacher_mode="cached")
    teacher = _constant_teacher(splits.input_shape, splits.num_classes, favourite=2)
    cached = np.tile(np.array([[0.0, 8.0, 0.0]], np.float32), (len(splits.train), 1))
    _, _, pred = _train(cfg, splits, "kd", teacher=teacher, cached=cached)
    assert np.mean(pred == 1) > 0.9  # the cache's favourite, not the online teacher's


def test_attention_transfer_reaches_training(setup):
    cfg, splits, _ = setup
    cfg = _with(cfg, gamma=5.0, at_layers=[["features_1", "features_1"]])
    keras.utils.set_random_seed(7)
    teacher = build_model("truncated_student", splits.input_shape, splits.num_classes,
                          blocks_removed=16)
    at, hist_at, _ = _train(cfg, splits, "at", epochs=1, teacher=teacher)
    plain, hist_plain, _ = _train(cfg, splits, "student", epochs=1, teacher=teacher)
    assert min(hist_at["at"]) > 0 and "at" not in hist_plain
    # Same seed, same data: only the AT term can make the weights differ.
    assert any(not np.allclose(a, b) for a, b in zip(at.student.get_weights(),
                                                     plain.student.get_weights()))
