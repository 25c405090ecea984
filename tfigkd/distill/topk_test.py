import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfigkd.distill import Distiller
from tfigkd.distill.losses import kd_loss_per_example
from tfigkd.distill.topk import (cache_bytes, kd_loss_top_k_per_example, pack_top_k,
                                 top_k_in_effect)


def _logits(n=6, c=7, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, c)) * scale).astype(np.float32)


def test_top_k_equals_full_loss_when_k_is_every_class():
    t, s = _logits(), tf.Variable(_logits(seed=1))
    packed = pack_top_k(t, 7, 2.5)
    assert packed.shape == (6, 15)
    with tf.GradientTape(persistent=True) as tape:
        full = kd_loss_per_example(t, s, 2.5)
        top = kd_loss_top_k_per_example(packed, s, 2.5, 7)
    np.testing.assert_allclose(top.numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
    # Same gradients too (training follows the same path).
    np.testing.assert_allclose(tape.gradient(top, s).numpy(), tape.gradient(full, s).numpy(),
                               rtol=1e-4, atol=1e-6)


def test_top_k_is_the_kl_over_k_classes_and_the_rest():
    t, s, T, k = _logits(), _logits(seed=1), 2.0, 3
    got = kd_loss_top_k_per_example(pack_top_k(t, k, T), s, T, k).numpy()

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(t.astype(np.float64) / T), softmax(s.astype(np.float64) / T)
    want = []
    for pi, qi in zip(p, q):
        top = np.argsort(-pi)[:k]
        rest = np.setdiff1d(np.arange(len(pi)), top)
        pb = np.append(pi[top], pi[rest].sum())
        qb = np.append(qi[top], qi[rest].sum())
        want.append(T ** 2 * np.sum(pb * np.log(pb / qb)))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # Smaller than the full KL (coarse-graining loses information), and not zero.
    full = kd_loss_per_example(t, s, T).numpy()
    assert np.all(got <= full + 1e-5) and np.all(got > 0)


def test_cache_sizes():
    assert cache_bytes(1000, 1000) == 4_000_000
    assert cache_bytes(1000, 1000, 10) == 4 * 1000 * 21
    assert top_k_in_effect(10, 10) is None and top_k_in_effect(0, 10) is None
    assert top_k_in_effect(3, 10) == 3


def test_distiller_with_top_k_cache_matches_full_cache():
    student = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(7)])
    index = np.array([5, 2, 9, 11, 0, 3], np.int64)
    t = _logits()
    x = {"image": np.random.default_rng(2).uniform(size=(6, 4, 4, 1)).astype("float32"),
         "index": index[::-1].copy()}
    y = np.zeros(6, np.int64)
    full = Distiller(student, alpha=0.5, temperature=2.5, cached_logits=t, cached_index=index)
    topk = Distiller(student, alpha=0.5, temperature=2.5, cached_index=index,
                     cached_logits=pack_top_k(t, 7, 2.5), cached_top_k=7)
    k3 = Distiller(student, alpha=0.5, temperature=2.5, cached_index=index,
                   cached_logits=pack_top_k(t, 3, 2.5), cached_top_k=3)
    kd_full, kd_top, kd_3 = (float(d.losses_for(x, y)[2]) for d in (full, topk, k3))
    assert kd_top == pytest.approx(kd_full, rel=1e-5)
    assert kd_3 != pytest.approx(kd_full, rel=1e-3) and 0 < kd_3 <= kd_full + 1e-6


def test_cached_teacher_logits_top_k(tmp_path, caplog):
    from tfigkd.config import DataConfig
    from tfigkd.data import load_splits
    from tfigkd.distill.logit_cache import cached_teacher_logits
    from tfigkd.testing import write_npz

    splits = load_splits(DataConfig(source="numpy", path=write_npz(
        str(tmp_path / "toy.npz"), n_train=40, n_test=10, num_classes=5)))
    teacher = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(5)])
    tpath = str(tmp_path / "t.keras")
    teacher.save(tpath)
    cache = str(tmp_path / "logits")
    full = cached_teacher_logits(cache, tpath, splits, "unit", teacher=teacher)
    with caplog.at_level("INFO"):
        packed = cached_teacher_logits(cache, tpath, splits, "unit", teacher=teacher, top_k=2,
                                       temperature=2.0)
    assert "top-2 of 5 classes" in caplog.text and "MB" in caplog.text
    assert packed.shape == (len(splits.train), 5)
    np.testing.assert_allclose(packed, pack_top_k(full, 2, 2.0), rtol=1e-5, atol=1e-6)
    man = json.load(open(os.path.join(cache, "manifest.json")))
    assert (man["top_k"], man["temperature"], man["num_classes"]) == (2, 2.0, 5)
    # Another temperature: recomputed, not reused.
    other = cached_teacher_logits(cache, tpath, splits, "unit", teacher=teacher, top_k=2,
                                  temperature=4.0)
    np.testing.assert_allclose(other, pack_top_k(full, 2, 4.0), rtol=1e-5, atol=1e-6)
