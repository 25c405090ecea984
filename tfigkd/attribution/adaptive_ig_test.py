"""Adaptive IG: refines only the images whose completeness error is too large."""

import keras
import numpy as np
import pytest

from tfigkd.attribution.integrated_gradients import (adaptive_integrated_gradients,
                                                     integrated_gradients, make_baseline)


def _two_kinds_model(shape=(6, 6, 1)):
    """Class 0: a linear score (any quadrature is exact). Class 1: a wiggly one."""
    inp = keras.Input(shape)
    flat = keras.layers.Flatten()(inp)

    def scores(v):
        s = keras.ops.mean(v, axis=1, keepdims=True)
        return keras.ops.concatenate([3.0 * s, keras.ops.sin(12.0 * s) + s], axis=1)

    return keras.Model(inp, keras.layers.Lambda(scores, output_shape=(2,))(flat))


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0.2, 1.0, size=(n, 6, 6, 1)).astype(np.float32)


def test_refines_only_where_needed():
    model = _two_kinds_model()
    x = _images(12)
    targets = np.arange(12) % 2
    attr, delta, steps = adaptive_integrated_gradients(model, x, targets, rtol=0.01, atol=1e-6,
                                                       start_steps=2, max_steps=128)
    assert (steps[targets == 0] == 2).all()        # linear: converged at once
    assert (steps[targets == 1] > 2).all()         # wiggly: refined
    change = attr.reshape(12, -1).sum(1) + delta
    assert (np.abs(delta) <= 0.01 * np.abs(change) + 1e-6).all()
    # Each image's result is exactly the fixed-step IG at its own step count.
    for n in np.unique(steps):
        rows = np.flatnonzero(steps == n)
        ref = integrated_gradients(model, x[rows], targets[rows], n_steps=int(n))
        np.testing.assert_allclose(attr[rows], ref, rtol=1e-5, atol=1e-7)


def test_tight_tolerance_matches_many_fixed_steps():
    model = _two_kinds_model()
    x = _images(6, seed=1)
    targets = np.ones(6, np.int64)
    attr, _, steps = adaptive_integrated_gradients(model, x, targets, rtol=1e-5, atol=0.0,
                                                   start_steps=4, max_steps=256)
    ref = integrated_gradients(model, x, targets, n_steps=256)
    np.testing.assert_allclose(attr, ref, rtol=1e-3, atol=1e-5 * np.abs(ref).max())
    assert steps.max() <= 256


def test_random_baseline_is_drawn_once_for_all_levels():
    model = _two_kinds_model()
    x = _images(8, seed=2)
    targets = np.arange(8) % 2
    attr, delta, steps = adaptive_integrated_gradients(model, x, targets, baseline="uniform",
                                                       rtol=0.01, start_steps=2, max_steps=64)
    base = make_baseline(x, "uniform")
    for i in np.flatnonzero(steps > 2):
        ref = integrated_gradients(model, x[i:i + 1], targets[i:i + 1], baseline=base[i:i + 1],
                                   n_steps=int(steps[i]))
        np.testing.assert_allclose(attr[i:i + 1], ref, rtol=1e-5, atol=1e-7)


def test_bad_arguments():
    model = _two_kinds_model()
    with pytest.raises(ValueError, match="start_steps"):
        adaptive_integrated_gradients(model, _images(2), [0, 1], start_steps=16, max_steps=8)
    with pytest.raises(ValueError, match="rtol"):
        adaptive_integrated_gradients(model, _images(2), [0, 1], rtol=0, atol=0)
