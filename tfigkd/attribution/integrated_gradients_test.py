import keras
import numpy as np
import pytest

from tfigkd.attribution import (METHODS, IntegratedGradients, ig_map, integrated_gradients,
                                make_baseline, quadrature)

SHAPE = (4, 3, 2)


def _linear_model(seed=0):
    inp = keras.Input(SHAPE)
    out = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(seed=seed),
                             bias_initializer="ones")(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


class _Square(keras.layers.Layer):
    """Class 0: sum(x^2); class 1: x[0,0,0] * x[0,0,1] (a product term)."""

    def call(self, x):
        sq = keras.ops.sum(keras.ops.square(x), axis=(1, 2, 3))
        prod = x[:, 0, 0, 0] * x[:, 0, 0, 1]
        return keras.ops.stack([sq, prod], axis=1)


def _square_model():
    inp = keras.Input(SHAPE)
    return keras.Model(inp, _Square()(inp))


def _cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="tanh")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(4)(x))


def _data(n=3, shape=SHAPE, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.normal(size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_quadrature_weights_sum_to_one_and_points_in_range(method):
    a, w = quadrature(method, 7)
    assert len(a) == len(w) == 7 and w.sum() == pytest.approx(1.0)
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("method", METHODS)
def test_linear_model_closed_form(method):
    model = _linear_model()
    x, base = _data()
    targets = np.array([0, 2, 1])
    attr, delta = integrated_gradients(model, x, targets, baseline=base, n_steps=5,
                                       method=method, return_delta=True)
    w = model.layers[-1].kernel.numpy()  # (24, 3)
    expected = (x - base).reshape(3, -1) * w[:, targets].T
    np.testing.assert_allclose(attr.reshape(3, -1), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_square_model_closed_form_per_rule(method):
    model = _square_model()
    x, base = _data()
    n = 6
    attr = integrated_gradients(model, x, [0, 0, 0], baseline=base, n_steps=n, method=method)
    a, w = quadrature(method, n)
    # d/dx sum(x^2) = 2x along the path; the rule integrates it exactly as below.
    path_mean = sum(wk * (base + ak * (x - base)) for ak, wk in zip(a, w))
    np.testing.assert_allclose(attr, (x - base) * 2 * path_mean, rtol=1e-4, atol=1e-5)
    if method in ("gausslegendre", "trapezoid", "riemann_middle"):
        # Exact for an integrand linear in alpha: IG = x^2 - x'^2.
        np.testing.assert_allclose(attr, x ** 2 - base ** 2, rtol=1e-4, atol=1e-5)


def test_product_term_splits_evenly_from_zero_baseline():
    x, _ = _data()
    attr = integrated_gradients(_square_model(), x, [1, 1, 1], n_steps=4)
    half = x[:, 0, 0, 0] * x[:, 0, 0, 1] / 2
    np.testing.assert_allclose(attr[:, 0, 0, 0], half, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(attr[:, 0, 0, 1], half, rtol=1e-4, atol=1e-6)
    assert np.abs(attr).reshape(3, -1)[:, 2:].max() == 0


@pytest.mark.parametrize("output", ["logits", "probabilities"])
def test_completeness_on_small_cnn(output):
    model = _cnn()
    x, _ = _data(5, (8, 8, 3), seed=3)
    attr, delta = integrated_gradients(model, x * 3, [0, 1, 2, 3, 0], n_steps=64,
                                       output=output, return_delta=True)
    span = np.abs(attr.reshape(5, -1).sum(1) + delta)
    assert np.all(np.abs(delta) <= 0.01 * span + 1e-5), (delta, span)


def test_error_shrinks_as_steps_grow():
    model = _cnn(1)
    x, _ = _data(4, (8, 8, 3), seed=5)
    errs = []
    for n in (2, 8, 32, 128):
        _, d = integrated_gradients(model, x * 3, [0, 1, 2, 3], n_steps=n,
                                    method="riemann_right", return_delta=True)
        errs.append(np.abs(d).mean())
    assert errs[0] > errs[1] > errs[2] > errs[3]
    assert errs[3] < errs[0] / 10


def test_internal_batch_size_does_not_change_the_result():
    model = _cnn(2)
    x, base = _data(3, (8, 8, 3), seed=7)
    full = integrated_gradients(model, x, [1, 2, 3], baseline=base, n_steps=10)
    for ibs in (1, 7, 10, 29):
        chunked = integrated_gradients(model, x, [1, 2, 3], baseline=base, n_steps=10,
                                       internal_batch_size=ibs)
        np.testing.assert_allclose(chunked, full, rtol=1e-4, atol=1e-6)


def test_baselines():
    x, _ = _data(2, (5, 5, 3))
    norm = ((0.5, 0.4, 0.3), (0.2, 0.2, 0.1))
    np.testing.assert_array_equal(make_baseline(x, None), 0)
    black = make_baseline(x, "black", norm)
    np.testing.assert_allclose(black[0, 0, 0], [-2.5, -2.0, -3.0], rtol=1e-6)
    u1, u2 = make_baseline(x, "uniform", norm, seed=1), make_baseline(x, "uniform", norm, seed=1)
    np.testing.assert_array_equal(u1, u2)
    blur = make_baseline(x, "blur")
    assert blur.shape == x.shape and blur.std() < x.std()
    np.testing.assert_array_equal(make_baseline(x, np.ones(3)), np.ones_like(x))
    with pytest.raises(ValueError, match="does not broadcast"):
        make_baseline(x, np.ones(4))
    with pytest.raises(ValueError, match="Unknown baseline"):
        make_baseline(x, "gray")


def test_bad_arguments():
    model = _linear_model()
    x, _ = _data()
    with pytest.raises(ValueError, match="Unknown IG method"):
        integrated_gradients(model, x, [0, 0, 0], method="simpson")
    with pytest.raises(ValueError, match="3 images but 2 targets"):
        integrated_gradients(model, x, [0, 0])
    with pytest.raises(ValueError, match="output must be"):
        IntegratedGradients(model, output="softmax")


def test_ig_map_reductions():
    a = np.array([[[[1.0, -2.0]], [[-3.0, 0.5]]]])  # (1, 2, 1, 2)
    np.testing.assert_allclose(ig_map(a), [[[3.0], [3.5]]])
    np.testing.assert_allclose(ig_map(a, "abs_sum"), [[[1.0], [2.5]]])
    np.testing.assert_allclose(ig_map(a, "sum"), [[[-1.0], [-2.5]]])
    np.testing.assert_allclose(ig_map(a, "l2"), [[[np.sqrt(5)], [np.sqrt(9.25)]]])
