"""Measured latency as a tuning objective: measured once per design, cached, keyed by architecture."""

import keras
import pytest

from tfigkd.bench.model_latency import (cached_int8_latency_ms, design_key,
                                        measure_int8_latency_ms)


def _tiny(filters):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(filters, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3)(x))


def test_latency_is_measured_once_per_design(tmp_path):
    calls = []

    def fake(model, runs):
        calls.append(model.name)
        return 0.5 if model.layers[1].filters == 4 else 0.9

    a, a2, b = _tiny(4), _tiny(4), _tiny(8)  # a2: the same design trained apart
    assert design_key(a, 100) == design_key(a2, 100) != design_key(b, 100)
    assert design_key(a, 100) != design_key(a, 50)
    assert cached_int8_latency_ms(a, str(tmp_path), 100, fake) == (0.5, True)
    assert cached_int8_latency_ms(a2, str(tmp_path), 100, fake) == (0.5, False)
    assert cached_int8_latency_ms(b, str(tmp_path), 100, fake) == (0.9, True)
    assert len(calls) == 2


def test_a_real_measurement_in_litert():
    ms = measure_int8_latency_ms(_tiny(4), runs=20, warmup=2)
    assert 0 < ms < 50
