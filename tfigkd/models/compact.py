"""Compact student families for phones and microcontrollers.

Truncating the teacher (``truncated_student``) keeps every expensive
high-resolution layer, so it compresses parameters far more than latency.
The designs here spend their compute where it is cheap: they downsample
early and stay narrow.

- ``resnet8``: the ResNet-8 of MLPerf Tiny's image-classification benchmark
  (3x3 conv 16, three residual stacks of 16/32/64 filters, the last two
  entered with stride 2 and a 1x1 stride-2 shortcut), with a width multiplier.
- ``mobilenet_v2``: MobileNetV2 with a width multiplier and configurable
  stem and stage strides; the CIFAR teacher is ``width=1, stem_stride=1,
  strides=(1, 1, 2, 2, 1, 2, 1)``.
- ``ds_cnn``: a depthwise-separable CNN in the style of MLPerf Tiny's
  keyword-spotting DS-CNN, adapted to images with stride-2 stages; the
  smallest and fastest family, meant for microcontrollers.

Every feature block's output is an identity layer named ``features_{i}``
(0 = stem), so attention transfer and IG tooling find blocks by name.
"""

from __future__ import annotations

import keras
from keras import layers

from tfigkd.errors import UserError
from tfigkd.models.mobilenet import (BN_EPSILON, BN_MOMENTUM, CIFAR_BLOCK_TABLE, LAST_CHANNELS,
                                     STEM_CHANNELS, _conv_bn, _inverted_residual)

CIFAR_STRIDES = tuple(s for _, _, _, s in CIFAR_BLOCK_TABLE)  # (1, 1, 2, 2, 1, 2, 1)


def _bn(x, name):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def _feature(x, i):
    return layers.Identity(name=f"features_{i}")(x)


def _head(x, num_classes, dropout):
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, name="logits")(x)


def _check_shape(input_shape, min_side, name):
    if len(input_shape) != 3 or min(input_shape[:2]) < min_side:
        raise UserError(f"{name} needs (H, W, C) inputs of at least {min_side}x{min_side}; "
                        f"got {tuple(input_shape)}.")


def resnet8(input_shape=(32, 32, 3), num_classes=10, width=1.0, dropout=0.0):
    """MLPerf Tiny's ResNet-8, with a width multiplier.

    Args:
        input_shape: (H, W, C).
        num_classes: Number of output logits.
        width: Multiplies the 16/32/64 filters of the three stacks (rounded,
            at least 4).
        dropout: Dropout before the classifier (MLPerf uses none).

    Returns:
        A functional ``keras.Model`` returning logits; ``features_0`` is the
        stem, ``features_1..3`` the residual stacks. 78,666 parameters
        (78,186 trainable) at 32x32x3 and 10 classes with ``width=1``.
    """
    _check_shape(input_shape, 1, "resnet8")
    if width <= 0:
        raise UserError(f"resnet8: width must be > 0, got {width}.")
    f = [max(4, int(round(c * width))) for c in (16, 32, 64)]
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    # Convolutions keep their bias, as in MLPerf Tiny's reference model.
    x = layers.Conv2D(f[0], 3, padding="same", name="stem_conv")(inputs)
    x = layers.ReLU(name="stem_relu")(_bn(x, "stem_bn"))
    x = _feature(x, 0)
    in_ch = f[0]
    for i, ch in enumerate(f):
        stride = 1 if i == 0 else 2
        name = f"stack{i + 1}"
        y = layers.Conv2D(ch, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
        y = layers.ReLU(name=f"{name}_relu1")(_bn(y, f"{name}_bn1"))
        y = layers.Conv2D(ch, 3, padding="same", name=f"{name}_conv2")(y)
        y = _bn(y, f"{name}_bn2")
        shortcut = x
        if stride != 1 or in_ch != ch:
            shortcut = layers.Conv2D(ch, 1, strides=stride, name=f"{name}_shortcut")(x)
        x = layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([shortcut, y]))
        x = _feature(x, i + 1)
        in_ch = ch
    return keras.Model(inputs, _head(x, num_classes, dropout), name="resnet8")


def _divisible(v, divisor=8):
    """MobileNet's channel rounding: a multiple of ``divisor``, never 10 % below ``v``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenet_v2(input_shape=(32, 32, 3), num_classes=10, width=1.0, stem_stride=1,
                 strides=CIFAR_STRIDES, last_channels=LAST_CHANNELS, dropout=0.0):
    """MobileNetV2 with a width multiplier and configurable strides.

    Args:
        input_shape: (H, W, C).
        num_classes: Number of output logits.
        width: Channel multiplier (channels rounded to multiples of 8).
        stem_stride: Stride of the 3x3 stem (1 for 32x32 CIFAR, 2 for ImageNet).
        strides: The first-block stride of each of the 7 stages; the CIFAR
            teacher uses (1, 1, 2, 2, 1, 2, 1), ImageNet (1, 2, 2, 2, 1, 2, 1).
        last_channels: Channels of the final 1x1 convolution (1280 in the
            paper; a small student can use far fewer).
        dropout: Dropout before the classifier.

    Returns:
        A functional ``keras.Model`` (logits) with ``features_0..18`` named
        as in the teacher. With the defaults and ``dropout=0.2`` it has the
        teacher's layers and 2,236,682 trainable parameters.
    """
    strides = tuple(int(s) for s in strides)
    if len(strides) != len(CIFAR_BLOCK_TABLE) or any(s not in (1, 2) for s in strides):
        raise UserError(f"mobilenet_v2: strides must be 7 values of 1 or 2 (one per stage), "
                        f"got {list(strides)}.")
    if stem_stride not in (1, 2) or width <= 0:
        raise UserError("mobilenet_v2: stem_stride must be 1 or 2 and width > 0.")
    _check_shape(input_shape, 1, "mobilenet_v2")  # "same" padding: any size downsamples to >= 1
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    in_ch = _divisible(STEM_CHANNELS * width)
    x = _conv_bn(inputs, in_ch, 3, stem_stride, "f0")
    x = _feature(x, 0)
    i = 1
    for (t, c, n, _), s in zip(CIFAR_BLOCK_TABLE, strides):
        out_ch = _divisible(c * width)
        for j in range(n):
            x = _inverted_residual(x, in_ch, out_ch, s if j == 0 else 1, t, f"f{i}")
            x = _feature(x, i)
            in_ch, i = out_ch, i + 1
    x = _conv_bn(x, int(last_channels), 1, 1, f"f{i}")
    x = _feature(x, i)
    return keras.Model(inputs, _head(x, num_classes, dropout), name="mobilenet_v2")


def ds_cnn(input_shape=(32, 32, 3), num_classes=10, filters=32, blocks=4, stem_stride=2,
           downsample=(2,), dropout=0.0):
    """A depthwise-separable CNN for microcontrollers.

    A 3x3 stem convolution, then ``blocks`` depthwise-separable blocks
    (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU); the blocks listed
    in ``downsample`` use stride 2 and double the channels.

    Args:
        input_shape: (H, W, C).
        num_classes: Number of output logits.
        filters: Channels of the stem and the first blocks.
        blocks: Number of depthwise-separable blocks.
        stem_stride: Stride of the stem (2 halves the resolution at once).
        downsample: Indices (0-based) of the blocks that use stride 2.
        dropout: Dropout before the classifier.

    Returns:
        A functional ``keras.Model`` (logits); ``features_0`` is the stem,
        ``features_{i+1}`` block ``i``.
    """
    downsample = tuple(int(b) for b in downsample)
    if blocks < 1 or filters < 1 or any(not 0 <= b < blocks for b in downsample):
        raise UserError(f"ds_cnn: need blocks >= 1, filters >= 1 and downsample indices in "
                        f"[0, {blocks}); got blocks={blocks}, filters={filters}, "
                        f"downsample={list(downsample)}.")
    _check_shape(input_shape, 1, "ds_cnn")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(filters, 3, strides=stem_stride, padding="same", use_bias=False,
                      name="stem_conv")(inputs)
    x = _feature(layers.ReLU(name="stem_relu")(_bn(x, "stem_bn")), 0)
    ch = filters
    for b in range(blocks):
        stride = 2 if b in downsample else 1
        ch = ch * 2 if stride == 2 else ch
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=f"b{b}_dw_conv")(x)
        x = layers.ReLU(name=f"b{b}_dw_relu")(_bn(x, f"b{b}_dw_bn"))
        x = layers.Conv2D(ch, 1, use_bias=False, name=f"b{b}_pw_conv")(x)
        x = layers.ReLU(name=f"b{b}_pw_relu")(_bn(x, f"b{b}_pw_bn"))
        x = _feature(x, b + 1)
    return keras.Model(inputs, _head(x, num_classes, dropout), name="ds_cnn")


# Named settings shipped for ``tfigkd students`` and configs: name -> (builder, kwargs).
PRESETS = {
    "truncated_k5": ("truncated_student", {"blocks_removed": 5}),
    "truncated_k11": ("truncated_student", {"blocks_removed": 11}),
    "mobilenet_v2_w035_s2": ("mobilenet_v2", {"width": 0.35, "stem_stride": 2,
                                              "strides": [1, 2, 2, 2, 1, 2, 1],
                                              "last_channels": 256}),
    "mobilenet_v2_w05_s2": ("mobilenet_v2", {"width": 0.5, "stem_stride": 2,
                                             "strides": [1, 1, 2, 2, 1, 2, 1],
                                             "last_channels": 384}),
    "resnet8": ("resnet8", {}),
    "resnet8_w05": ("resnet8", {"width": 0.5}),
    # ~37x faster than the shipped ResNet-8 x2 teacher in int8 LiteRT (kd_recipe study).
    "ds_cnn_xs": ("ds_cnn", {"filters": 16, "blocks": 2, "downsample": [0]}),
    "ds_cnn_s": ("ds_cnn", {"filters": 16, "blocks": 3, "downsample": [1]}),
    "ds_cnn_m": ("ds_cnn", {"filters": 32, "blocks": 4, "downsample": [2]}),
    "ds_cnn_l": ("ds_cnn", {"filters": 64, "blocks": 5, "downsample": [2]}),
}
