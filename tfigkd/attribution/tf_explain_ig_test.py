"""tf-explain's IntegratedGradients omits the (x - baseline) factor; ours does not.

IG_i = (x_i - x'_i) * integral of dF/dx_i along the path. tf-explain returns
only the path-averaged gradient, so its attributions do not sum to
F(x) - F(x') (completeness fails) until multiplied by (x - x'), after which
they match ours. This is why tfigkd never uses tf-explain's IG.
"""

import keras
import numpy as np
import tensorflow as tf

from tfigkd.attribution import integrated_gradients


def _smooth_model():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(3)(keras.layers.Dense(16, activation="softplus")(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.weights])
    return model


def test_tf_explain_ig_lacks_the_input_factor():
    from tf_explain.core.integrated_gradients import IntegratedGradients as TfxIG

    keras.utils.set_random_seed(0)
    model = _smooth_model()
    x = np.random.default_rng(1).uniform(0.0, 1.0, (4, 8, 8, 1)).astype("float32")
    target, n = 2, 256
    ours = integrated_gradients(model, x, np.full(len(x), target), baseline="zeros", n_steps=64)
    paths = TfxIG.generate_interpolations(x, n)  # zero baseline, as ours
    theirs = TfxIG.get_integrated_gradients(tf.constant(paths, tf.float32), model, target,
                                            n).numpy()
    span = (model(x)[:, target] - model(np.zeros_like(x))[:, target]).numpy()

    # Completeness: ours sums to F(x) - F(0); theirs does not.
    np.testing.assert_allclose(ours.reshape(4, -1).sum(1), span, rtol=1e-3)
    their_err = np.abs(theirs.reshape(4, -1).sum(1) - span) / np.abs(span)
    assert their_err.min() > 0.2, their_err
    # Theirs times (x - baseline) is ours (up to their equal-weight Riemann sum).
    fixed = theirs * (x - 0.0)
    np.testing.assert_allclose(fixed, ours, rtol=0.02, atol=0.01 * np.abs(ours).max())
    assert not np.allclose(theirs, ours, rtol=0.02, atol=0.01 * np.abs(ours).max())
