import keras

from tfigkd.models import count_macs, mobilenet_v2_cifar, truncated_student
from tfigkd.models.macs import format_summary, summarize


def _single(layer, shape):
    inp = keras.Input(shape)
    return keras.Model(inp, layer(inp))


def test_conv2d_macs():
    # 8x8 output, 3x3 kernel, 4 in, 16 out: 64 * 9 * 4 * 16.
    m = _single(keras.layers.Conv2D(16, 3, padding="same"), (8, 8, 4))
    assert count_macs(m) == 64 * 9 * 4 * 16


def test_strided_and_grouped_conv_macs():
    m = _single(keras.layers.Conv2D(8, 3, strides=2, padding="same", groups=2), (8, 8, 4))
    assert count_macs(m) == 16 * 9 * 2 * 8


def test_depthwise_macs():
    m = _single(keras.layers.DepthwiseConv2D(3, padding="valid"), (6, 6, 5))
    assert count_macs(m) == 16 * 9 * 5


def test_dense_macs_and_free_layers():
    inp = keras.Input((10,))
    x = keras.layers.Dense(7)(inp)
    x = keras.layers.ReLU()(x)
    x = keras.layers.BatchNormalization()(x)
    assert count_macs(keras.Model(inp, x)) == 70


def test_nested_models_are_counted():
    inner = _single(keras.layers.Dense(3), (4,))
    inp = keras.Input((4,))
    outer = keras.Model(inp, keras.layers.Dense(2)(inner(inp)))
    assert count_macs(outer) == 12 + 6


def test_teacher_and_paper_student_macs():
    # docs/method.md section 2: about 88 M for the teacher vs 59 M for the 4.1x student.
    assert count_macs(mobilenet_v2_cifar()) == 87_976_448
    assert count_macs(truncated_student(5)) == 58_696_640


def test_summary_table():
    t, s = mobilenet_v2_cifar(), truncated_student(5)
    text = format_summary([summarize(t), summarize(s, t)])
    assert "2,236,682" in text and "543,498" in text and "4.12" in text
