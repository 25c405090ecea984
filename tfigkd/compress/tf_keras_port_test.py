import keras
import numpy as np
import pytest

from tfigkd.compress.tf_keras_port import UnsupportedLayerError, to_tf_keras
from tfigkd.models import truncated_student


def test_twin_computes_the_same_function():
    keras.utils.set_random_seed(0)
    model = truncated_student(13, (12, 12, 2), 4)
    rng = np.random.default_rng(0)
    # Non-trivial BatchNorm statistics, so a wrong weight order would show.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    twin = to_tf_keras(model)
    x = rng.random((5, 12, 12, 2)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    assert np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(twin.predict(x, verbose=0), ref, rtol=1e-4, atol=1e-5)
    assert type(twin).__module__.startswith("tf_keras")
    assert not any(type(layer).__name__ == "Identity" for layer in twin.layers)


def test_unsupported_layer_is_named():
    inp = keras.Input((4,))
    out = keras.layers.Dense(2)(keras.layers.LayerNormalization(name="ln")(inp))
    with pytest.raises(UnsupportedLayerError, match="'ln' \\(LayerNormalization\\)"):
        to_tf_keras(keras.Model(inp, out))
