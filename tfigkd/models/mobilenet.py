"""MobileNetV2, CIFAR variant (docs/method.md section 1), and its truncated students.

The network is described as a flat list of *feature blocks* (stem, 17
inverted-residual blocks, final 1x1 conv: 19 in all) so that a student is
simply the first ``19 - k`` of them. Every feature block's output layer is
named ``features_{i}`` so that attention transfer and IG tooling can pick
intermediate maps by index.
"""

from __future__ import annotations

import keras
from keras import layers

from tfigkd.errors import UserError

# (expansion t, output channels c, repeats n, first stride s). The second
# stage uses stride 1 (torchvision uses 2): the CIFAR variant of the paper.
CIFAR_BLOCK_TABLE = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
# PyTorch's BatchNorm defaults (momentum 0.1 there = 0.9 here, eps 1e-5), as in
# the authors' code. Keras' default momentum 0.99 leaves the moving statistics
# near their initial values for the first few hundred steps, so short runs
# validate at chance level.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
LAST_CHANNELS = 1280
NUM_FEATURES = 1 + sum(n for _, _, n, _ in CIFAR_BLOCK_TABLE) + 1  # 19


def _conv_bn(x, filters, kernel, stride, name, activation=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same",
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                  name=f"{name}_bn")(x)
    if activation:
        x = layers.ReLU(6.0, name=f"{name}_relu")(x)
    return x


def _inverted_residual(x, in_ch, out_ch, stride, expansion, name):
    shortcut = x
    hidden = in_ch * expansion
    if expansion != 1:
        x = _conv_bn(x, hidden, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same",
                               use_bias=False, name=f"{name}_dw_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                  name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, out_ch, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and in_ch == out_ch:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


def _feature_specs():
    """Yields one spec per feature block, in order: (kind, args)."""
    yield ("stem", (STEM_CHANNELS,))
    in_ch = STEM_CHANNELS
    for t, c, n, s in CIFAR_BLOCK_TABLE:
        for i in range(n):
            yield ("block", (in_ch, c, s if i == 0 else 1, t))
            in_ch = c
    yield ("last", (LAST_CHANNELS,))


def feature_channels():
    """Output channels of each of the 19 feature blocks, in order."""
    return [args[1] if kind == "block" else args[0]
            for kind, args in _feature_specs()]


def _build(num_features, input_shape, num_classes, dropout, name):
    if not 1 <= num_features <= NUM_FEATURES:
        raise UserError(
            f"num_features must be in [1, {NUM_FEATURES}], got {num_features}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, (kind, args) in enumerate(_feature_specs()):
        if i >= num_features:
            break
        if kind == "stem" or kind == "last":
            # Stride 1 stem: CIFAR-sized inputs keep their resolution.
            x = _conv_bn(x, args[0], 3 if kind == "stem" else 1, 1, f"f{i}")
        else:
            x = _inverted_residual(x, *args[:3], expansion=args[3], name=f"f{i}")
        # An identity layer gives every feature block a stable, public name.
        x = layers.Identity(name=f"features_{i}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def mobilenet_v2_cifar(input_shape=(32, 32, 3), num_classes=10, dropout=0.2,
                       name="mobilenet_v2_cifar"):
    """Builds the paper's teacher: MobileNetV2 with a stride-1 stem and stage 2.

    Args:
        input_shape: (H, W, C) of the (already normalised) input images.
        num_classes: Number of output logits.
        dropout: Dropout rate before the classifier (0.2 in the paper).
        name: Model name.

    Returns:
        A functional ``keras.Model`` returning logits. At 32x32x3 with 10
        classes it has 2,236,682 trainable parameters.
    """
    return _build(NUM_FEATURES, input_shape, num_classes, dropout, name)


def truncated_student(blocks_removed, input_shape=(32, 32, 3), num_classes=10,
                      dropout=0.0, name=None):
    """Builds a student: the teacher with its last ``blocks_removed`` features cut.

    The student keeps the first ``19 - blocks_removed`` feature blocks at full
    width, then global average pooling and a dense classifier (docs/method.md
    section 2). ``blocks_removed=5`` is the paper's 4.12x student.

    Args:
        blocks_removed: k in [0, 18]: how many trailing feature blocks to drop.
        input_shape: (H, W, C) of the input images.
        num_classes: Number of output logits.
        dropout: Dropout before the classifier (the paper uses none).
        name: Model name; defaults to ``student_k{blocks_removed}``.

    Returns:
        A functional ``keras.Model`` returning logits.

    Raises:
        ValueError: If ``blocks_removed`` is out of range.
    """
    if not isinstance(blocks_removed, int) or not 0 <= blocks_removed < NUM_FEATURES:
        raise UserError(
            f"blocks_removed must be an integer in [0, {NUM_FEATURES - 1}], "
            f"got {blocks_removed!r}.")
    return _build(NUM_FEATURES - blocks_removed, input_shape, num_classes,
                  dropout, name or f"student_k{blocks_removed}")
