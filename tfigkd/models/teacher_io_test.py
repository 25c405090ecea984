import keras
import numpy as np
import pytest
import tensorflow as tf

from tfigkd.data import normalize
from tfigkd.distill import Distiller
from tfigkd.models.teacher_io import (affine, as_logits, resize_images, resize_maps,
                                      softmax_output)


@pytest.mark.parametrize("mode,lo,hi", [("raw", 0.0, 255.0), ("minus_one_one", -1.0, 1.0),
                                        ("unit", 0.0, 1.0)])
def test_normalisations(mode, lo, hi):
    x = tf.constant([[[[0, 0, 0], [255, 255, 255]]]], tf.uint8)
    out = normalize(x, mode).numpy()
    np.testing.assert_allclose(out[0, 0, 0], lo, atol=1e-6)
    np.testing.assert_allclose(out[0, 0, 1], hi, atol=1e-5)
    # The affine form the Distiller uses gives the same numbers.
    m, s = affine(mode, channels=3)
    np.testing.assert_allclose((x.numpy() / 255.0 - m) / s, out, atol=1e-4)


def test_imagenet_and_explicit_stats():
    x = tf.fill([1, 1, 1, 3], tf.constant(128, tf.uint8))
    want = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(normalize(x, "imagenet").numpy()[0, 0, 0], want, rtol=1e-5)
    got = normalize(x, "dataset", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).numpy()
    np.testing.assert_allclose(got, (128 / 255 - 0.5) / 0.25, rtol=1e-4)
    assert len(affine("imagenet", channels=1)[0]) == 1


def _softmax_teacher(size, fused):
    inp = keras.Input((*size, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    if fused:
        return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    return keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(3, name="logits")(x)))


def test_softmax_teacher_detected(caplog):
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    layered = _softmax_teacher((8, 8), fused=False)
    assert softmax_output(layered) == "layer"
    with caplog.at_level("WARNING"):
        logits = as_logits(layered)
    assert "softmax layer" in caplog.text
    pre = keras.Model(layered.inputs, layered.get_layer("logits").output)
    np.testing.assert_allclose(logits(x).numpy(), pre(x).numpy(), rtol=1e-5)
    fused = _softmax_teacher((8, 8), fused=True)
    assert softmax_output(fused) == "activation"
    np.testing.assert_allclose(as_logits(fused)(x).numpy(), np.log(fused(x).numpy()), rtol=1e-4)
    plain = keras.Model(layered.inputs, layered.get_layer("logits").output)
    assert softmax_output(plain) is None and as_logits(plain) is plain


def test_online_teacher_input_matches_the_pipeline():
    # Online KD: the Distiller resizes and normalises the student's [0, 1] batch;
    # cached logits and IG: the pipeline resizes and normalises uint8 images.
    teacher = _softmax_teacher((20, 20), fused=False)
    student = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(3)])
    m, s = affine("raw", channels=3)
    d = Distiller(student, teacher, teacher_mean=m, teacher_std=s)
    x = np.random.default_rng(1).integers(0, 256, (4, 12, 12, 3)).astype(np.uint8)
    online = d._teacher_input(tf.constant(x, tf.float32) / 255.0).numpy()
    offline = normalize(resize_images(x, (20, 20)), "raw").numpy()
    assert online.shape == (4, 20, 20, 3)
    np.testing.assert_allclose(online, offline, atol=1e-3)


def test_resize_maps_keeps_distributions():
    maps = np.zeros((2, 20, 20), np.float32)
    maps[0, :10] = 1
    maps[1, :, 10:] = 1
    maps /= maps.reshape(2, -1).sum(1)[:, None, None]
    small = resize_maps(maps, (12, 12))
    assert small.shape == (2, 12, 12)
    np.testing.assert_allclose(small.reshape(2, -1).sum(1), 1.0, rtol=1e-5)
    assert small[0, :6].sum() > 0.95 and small[1, :, 6:].sum() > 0.95


def _head(x, classes=3):
    import keras

    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(classes)(x)


@pytest.mark.parametrize("pre,want", [
    (lambda k: k.layers.Rescaling(1 / 255.0), "raw"),
    (lambda k: k.layers.Rescaling(1 / 127.5, offset=-1.0), "raw"),
    (lambda k: k.layers.Rescaling(2.0, offset=-1.0), "unit"),        # [0, 1] -> [-1, 1]
    (lambda k: k.layers.Normalization(mean=[123.7, 116.3, 103.5],
                                      variance=[3409.0, 3249.0, 3295.0]), "raw"),
    (lambda k: k.layers.Normalization(mean=[0.485, 0.456, 0.406],
                                      variance=[0.052, 0.05, 0.051]), "unit"),
    (None, None),
])
def test_detect_input_norm_reads_the_preprocessing_layer(pre, want):
    import keras

    from tfigkd.models.teacher_io import detect_input_norm

    inp = keras.Input((8, 8, 3))
    x = keras.layers.RandomFlip()(inp)   # inference-time identity: looked through
    x = pre(keras)(x) if pre else x
    norm, why = detect_input_norm(keras.Model(inp, _head(x)))
    assert norm == want
    assert (why is None) == (want is None)


def test_detect_input_norm_looks_into_nested_models_and_stops_at_the_first_conv():
    import keras

    from tfigkd.models.teacher_io import detect_input_norm

    pre = keras.Sequential([keras.layers.Rescaling(1 / 255.0)])
    inp = keras.Input((8, 8, 3))
    assert detect_input_norm(keras.Model(inp, _head(pre(inp))))[0] == "raw"
    # A Rescaling after the first convolution says nothing about the input.
    x = keras.layers.Conv2D(3, 1)(inp)
    x = keras.layers.Rescaling(1 / 255.0)(x)
    assert detect_input_norm(keras.Model(inp, _head(x))) == (None, None)


def test_keras_applications_with_built_in_preprocessing_take_raw_pixels():
    import keras

    from tfigkd.models.teacher_io import detect_input_norm

    m = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=3,
                                            include_preprocessing=True)
    assert detect_input_norm(m)[0] == "raw"
    m = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=3,
                                            include_preprocessing=False)
    assert detect_input_norm(m) == (None, None)
