import keras
import numpy as np
import pytest

from tfigkd.config import OptimizerConfig
from tfigkd.experiments.optim import WarmupCosine, build_optimizer


def test_warmup_then_cosine():
    s = WarmupCosine(0.1, total_steps=100, warmup_steps=30)
    assert float(s(0)) == pytest.approx(0.1 / 30)
    assert float(s(29)) == pytest.approx(0.1)
    assert float(s(30)) == pytest.approx(0.1)
    assert float(s(65)) == pytest.approx(0.05, rel=1e-5)  # half way through the decay
    assert float(s(100)) == pytest.approx(0.0, abs=1e-8)
    lrs = np.array([float(s(i)) for i in range(30, 101)])
    assert np.all(np.diff(lrs) <= 1e-9)


def test_schedule_serialises():
    s = WarmupCosine(0.1, 100, 30)
    s2 = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert float(s2(50)) == pytest.approx(float(s(50)))


def test_build_optimizer_variants():
    sgd = build_optimizer(OptimizerConfig(weight_decay=0.01), epochs=2, steps_per_epoch=5)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.weight_decay == 0.01
    adam = build_optimizer(OptimizerConfig(name="adam", lr=1e-3, schedule="constant"), 1, 1)
    assert isinstance(adam, keras.optimizers.Adam)
    assert float(adam.learning_rate) == pytest.approx(1e-3)
