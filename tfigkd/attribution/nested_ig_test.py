"""Nested adaptive IG: right integral, each point evaluated once, refined only where needed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfigkd.attribution.integrated_gradients import (NESTED, IntegratedGradients,
                                                     integrated_gradients, quadrature)
from tfigkd.attribution.nested_ig import nested_adaptive
from tfigkd.errors import UserError

SHAPE = (6, 6, 1)


class _Scores(keras.layers.Layer):
    """Class 0: linear in the pixels (every rule exact). Class 1: bends once, near s = 0.15.

    Counts the rows it sees: each row is one gradient evaluation, since the
    nested rule needs no forward pass besides those of its gradients.
    """

    def build(self, input_shape):
        self.rows = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                    dtype="int64", name="rows")

    def call(self, v):
        self.rows.assign_add(tf.cast(tf.shape(v)[0], tf.int64))
        s = keras.ops.mean(v, axis=1, keepdims=True)
        return keras.ops.concatenate([3.0 * s, keras.ops.tanh(25.0 * (s - 0.15)) + s], axis=1)


def _model():
    inp = keras.Input(SHAPE)
    scores = _Scores()
    model = keras.Model(inp, scores(keras.layers.Flatten()(inp)))
    return model, scores


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0.4, 1.0, size=(n, *SHAPE)).astype(np.float32)


def test_tight_tolerance_matches_high_step_gauss_legendre():
    model, _ = _model()
    x, t = _images(6, seed=1), np.ones(6, np.int64)
    attr, delta, _ = IntegratedGradients(model).attribute_adaptive(
        x, t, rtol=1e-6, atol=0.0, start_steps=4, max_steps=4096, method=NESTED)
    ref = integrated_gradients(model, x, t, n_steps=256)
    np.testing.assert_allclose(attr, ref, rtol=2e-4, atol=2e-4 * np.abs(ref).max())
    change = attr.reshape(6, -1).sum(1) + delta
    assert (np.abs(delta) <= 1e-6 * np.abs(change) + 1e-6).all()


def _grad_at(model, x, t, alpha):
    v = tf.constant(alpha * x)
    with tf.GradientTape() as tape:
        tape.watch(v)
        out = tf.gather(model(v), t, axis=1, batch_dims=1)
    return tape.gradient(out, v).numpy()


def test_fully_refined_equals_fixed_trapezoid_weights():
    """Refined to the cap everywhere, the sums must equal the (n + 1)-point trapezoid."""
    model, _ = _model()
    x, t = _images(5), np.ones(5, np.int64)
    ig = IntegratedGradients(model)
    attr, _, evals = ig.attribute_adaptive(x, t, rtol=1e-12, atol=0.0, start_steps=2,
                                           max_steps=16, method=NESTED, internal_batch_size=7)
    a, w = quadrature("trapezoid", 17)
    by_hand = x * sum(wi * _grad_at(model, x, t, ai) for ai, wi in zip(a, w))
    assert (evals == 17).all()
    np.testing.assert_allclose(attr, by_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ig.attribute(x, t, n_steps=16, method=NESTED), by_hand,
                               rtol=1e-5, atol=1e-6)


def test_refinement_evaluates_only_new_points():
    model, scores = _model()
    x, t = _images(8, seed=2), np.ones(8, np.int64)
    ig = IntegratedGradients(model)
    start = int(scores.rows.numpy())
    # Everything refined to 32 intervals from 4: 33 distinct points per image.
    _, _, evals = ig.attribute_adaptive(x, t, rtol=1e-12, atol=0.0, start_steps=4,
                                        max_steps=32, method=NESTED, internal_batch_size=10)
    assert (evals == 33).all()
    assert int(scores.rows.numpy()) - start == 8 * 33
    # Adaptive: the model saw exactly the points the result counts.
    start = int(scores.rows.numpy())
    _, _, evals = ig.attribute_adaptive(x, t, rtol=1e-3, atol=0.0, start_steps=4,
                                        max_steps=256, method=NESTED, internal_batch_size=64)
    assert int(scores.rows.numpy()) - start == evals.sum()
    assert 5 < evals.min() and evals.max() < 257  # refined, but not everywhere


def test_refines_only_the_images_and_panels_that_need_it():
    model, scores = _model()
    x, t = _images(10, seed=3), np.arange(10) % 2
    start = int(scores.rows.numpy())
    attr, delta, evals = nested_adaptive(IntegratedGradients(model), x, t, rtol=1e-3, atol=1e-7,
                                         start_steps=8, max_steps=1024)
    assert (evals[t == 0] == 9).all()        # linear: the 9 panel ends suffice
    assert (evals[t == 1] > 9).all()
    assert int(scores.rows.numpy()) - start == evals.sum()
    change = attr.reshape(10, -1).sum(1) + delta
    assert (np.abs(delta) <= 1e-3 * np.abs(change) + 1e-7).all()
    # The bend sits in two of the 8 panels: halving only those beats the
    # fewest uniform intervals that meet the same tolerance on each image.
    for i in np.flatnonzero(t == 1):
        n = 8
        while True:
            a, d = integrated_gradients(model, x[i:i + 1], t[i:i + 1], n_steps=n, method=NESTED,
                                        return_delta=True)
            if abs(d[0]) <= 1e-3 * abs(a.sum() + d[0]) + 1e-7:
                break
            n *= 2
        assert evals[i] < n + 1, (i, evals[i], n)


@pytest.mark.parametrize("start, cap", [(3, 16), (4, 24), (8, 4)])
def test_steps_must_be_powers_of_two(start, cap):
    model, _ = _model()
    with pytest.raises(UserError, match="powers of two"):
        nested_adaptive(IntegratedGradients(model), _images(2), [0, 1], start_steps=start,
                        max_steps=cap)
