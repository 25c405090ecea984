import keras
import numpy as np
import pytest

from tfigkd.errors import UserError
from tfigkd.models import (PRESETS, build_model, count_macs, mobilenet_v2, mobilenet_v2_cifar,
                           trainable_params)


def test_resnet8_matches_the_mlperf_tiny_layout_by_hand_count():
    m = build_model("resnet8", (32, 32, 3), 10)
    conv = lambda k, cin, cout: k * k * cin * cout + cout  # noqa: E731 - weights + bias
    bn = lambda c: 4 * c  # noqa: E731 - gamma, beta, moving mean, moving variance
    expected = (conv(3, 3, 16) + bn(16)
                + 2 * (conv(3, 16, 16) + bn(16))
                + conv(3, 16, 32) + conv(3, 32, 32) + conv(1, 16, 32) + 2 * bn(32)
                + conv(3, 32, 64) + conv(3, 64, 64) + conv(1, 32, 64) + 2 * bn(64)
                + 64 * 10 + 10)
    assert m.count_params() == expected == 78_666
    assert trainable_params(m) == 78_186
    shapes = {n: tuple(m.get_layer(n).output.shape[1:]) for n in
              ("features_0", "features_1", "features_2", "features_3")}
    assert shapes == {"features_0": (32, 32, 16), "features_1": (32, 32, 16),
                      "features_2": (16, 16, 32), "features_3": (8, 8, 64)}
    half = build_model("resnet8", (32, 32, 3), 10, width=0.5)
    assert tuple(half.get_layer("features_3").output.shape[1:]) == (8, 8, 32)


def test_mobilenet_v2_default_is_the_cifar_teacher():
    a = mobilenet_v2_cifar((32, 32, 3), 10)
    b = mobilenet_v2((32, 32, 3), 10, dropout=0.2)
    assert trainable_params(a) == trainable_params(b) == 2_236_682
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    assert count_macs(a) == count_macs(b)


def test_mobilenet_v2_width_and_strides():
    m = mobilenet_v2((28, 28, 1), 10, width=0.35, stem_stride=2, strides=[1, 2, 2, 2, 1, 2, 1],
                     last_channels=256)
    assert tuple(m.get_layer("features_0").output.shape[1:]) == (14, 14, 16)  # 32 * 0.35 -> 16
    assert tuple(m.get_layer("features_18").output.shape[1:]) == (1, 1, 256)
    assert count_macs(m) < count_macs(mobilenet_v2_cifar((28, 28, 1), 10)) / 50
    with pytest.raises(UserError, match="7 values of 1 or 2"):
        mobilenet_v2((28, 28, 1), 10, strides=[1, 2])


def test_ds_cnn_blocks_and_downsampling():
    m = build_model("ds_cnn", (28, 28, 1), 7, filters=16, blocks=3, downsample=[1])
    assert [tuple(m.get_layer(f"features_{i}").output.shape[1:]) for i in range(4)] == [
        (14, 14, 16), (14, 14, 16), (7, 7, 32), (7, 7, 32)]
    assert m.output_shape == (None, 7)
    # Hand count: stem 3x3x1x16, per block depthwise 3x3xC + pointwise CxC', BN gamma/beta.
    expected = (9 * 16 + 2 * 16) + (9 * 16 + 2 * 16 + 16 * 16 + 2 * 16) \
        + (9 * 16 + 2 * 16 + 16 * 32 + 2 * 32) + (9 * 32 + 2 * 32 + 32 * 32 + 2 * 32) + 32 * 7 + 7
    assert trainable_params(m) == expected
    with pytest.raises(UserError, match="downsample indices"):
        build_model("ds_cnn", (28, 28, 1), 10, blocks=2, downsample=[3])


# Odd feature maps after downsampling (28), a small RGB input that also runs a forward
# pass (16), a large one (96). 32x32x3 added nothing these do not cover and cost
# a fifth of the suite's model-building time.
@pytest.mark.parametrize("shape", [(28, 28, 1), (16, 16, 3), (96, 96, 3)])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_for_any_shape_and_names_its_blocks(preset, shape):
    name, kwargs = PRESETS[preset]
    m = build_model(name, shape, 5, **kwargs)
    # Building the functional graph checks every layer's shapes; one forward pass per
    # preset (the smallest shape) checks that it also runs, at a fraction of the time.
    assert m.output_shape == (None, 5)
    if shape == (16, 16, 3):
        x = np.random.default_rng(0).random((2, *shape)).astype("float32")
        assert m(x).shape == (2, 5)
    assert "features_0" in [layer.name for layer in m.layers]
    keras.backend.clear_session()
