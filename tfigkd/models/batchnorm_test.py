import keras
import numpy as np
import pytest

from tfigkd.distill import Distiller
from tfigkd.models import build_model
from tfigkd.models.batchnorm import (BatchNormEstimator, PreciseBatchNorm, batchnorm_layers,
                                     recompute_batchnorm_statistics)
from tfigkd.testing import synthetic_images


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model("ds_cnn", (12, 12, 1), 3, filters=8, blocks=3)


def _data(n=96):
    x, y = synthetic_images(n, (12, 12, 1), 3, seed=1)
    return x.astype(np.float32) / 255.0, y


def test_statistics_of_one_batch_make_inference_equal_training_mode():
    model = _model()
    x, _ = _data(64)
    trained = [w.numpy().copy() for w in model.trainable_weights]
    # Fresh moving statistics (0, 1) are far from the data's: inference differs.
    assert np.abs(model(x, training=False) - model(x, training=True)).max() > 1e-2
    assert recompute_batchnorm_statistics(model, x, batch_size=64) == len(batchnorm_layers(model))
    np.testing.assert_allclose(model(x, training=False), model(x, training=True),
                               rtol=1e-4, atol=1e-4)
    for a, b in zip(trained, model.trainable_weights):  # only the statistics changed
        np.testing.assert_array_equal(a, b.numpy())


def test_statistics_are_averages_of_batch_statistics():
    model = _model()
    x, _ = _data(96)
    first = batchnorm_layers(model)[0]
    est = BatchNormEstimator(model)
    est(x, batch_size=32)
    # The first BatchNorm sees the stem convolution's output: check it by hand.
    stem = keras.Model(model.inputs, first.input)
    feats = [stem(x[i:i + 32], training=True).numpy() for i in (0, 32, 64)]
    np.testing.assert_allclose(first.moving_mean.numpy(),
                               np.mean([f.mean((0, 1, 2)) for f in feats], 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(first.moving_variance.numpy(),
                               np.mean([f.var((0, 1, 2)) for f in feats], 0), rtol=1e-4, atol=1e-6)


def test_callback_fixes_the_short_epoch_lag_inside_fit():
    x, y = _data(96)

    def train(callbacks):
        model = _model(3)
        model.compile(keras.optimizers.Adam(1e-2),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        hist = model.fit(x, y, batch_size=32, epochs=2, steps_per_epoch=3, verbose=0,
                         validation_data=(x, y), callbacks=callbacks, shuffle=False)
        return model, hist.history

    plain, h_plain = train([])
    cb = PreciseBatchNorm(x, batch_size=96)
    fixed, h_fixed = train([cb])
    # Same weights (the statistics do not feed back into training) ...
    for a, b in zip(plain.trainable_weights, fixed.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    # ... but validation with statistics that match them.
    train_mode_acc = float(np.mean(np.argmax(fixed(x, training=True), -1) == y))
    assert h_fixed["val_accuracy"][-1] == pytest.approx(train_mode_acc, abs=1 / 96)
    assert h_fixed["val_accuracy"][-1] > h_plain["val_accuracy"][-1] + 0.1
    # A separate evaluate() does not re-estimate.
    before = batchnorm_layers(fixed)[0].moving_mean.numpy().copy()
    fixed.evaluate(x[:10], y[:10], verbose=0, callbacks=[cb])
    np.testing.assert_array_equal(before, batchnorm_layers(fixed)[0].moving_mean.numpy())


def test_callback_updates_a_distillers_student():
    x, y = _data(48)
    student, teacher = _model(1), _model(2)
    d = Distiller(student, teacher, alpha=0.5)
    d.compile(optimizer="adam", metrics=["accuracy"])
    d.fit(x, y, batch_size=48, epochs=1, verbose=0, validation_data=(x, y),
          callbacks=[PreciseBatchNorm(x, batch_size=48)])
    np.testing.assert_allclose(student(x, training=False), student(x, training=True),
                               rtol=1e-4, atol=1e-4)
