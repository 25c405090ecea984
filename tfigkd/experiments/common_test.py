import keras
import numpy as np
import tensorflow as tf

from tfigkd.experiments.common import evaluate_accuracy


def test_evaluate_accuracy_counts_every_image_of_uneven_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(53, 4)).astype("float32")
    y = rng.integers(0, 3, size=53)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    expected = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    for batches in (ds.batch(16), ds.batch(32)):  # 16, 16, 16, 5 (traced); 32, 21 (eager)
        assert evaluate_accuracy(model, batches) == expected
    assert 0 < expected < 1  # a mixed case: off-by-one counting would show
