"""Pieces shared by the training stages: datasets, compile, evaluation."""

from __future__ import annotations

import math

import keras

from tfigkd.bench.machine import machine_info  # noqa: F401  (importable from here, as before)
from tfigkd.data import make_dataset


def training_data(splits, train_cfg, seed, **kwargs):
    """``fn(first_epoch, num_epochs) -> dataset`` of a recipe's training split (for ``fit_resumable``).

    Extra keyword arguments go to ``make_dataset`` (``with_index``,
    ``extras``, ``batch_transform``, ...).
    """
    def build(epoch, num_epochs):
        return make_dataset(splits.train, batch_size=train_cfg.batch_size, training=True,
                            input_norm=train_cfg.input_norm, mean=splits.mean, std=splits.std,
                            crop_pad=train_cfg.augment.crop_pad, flip=train_cfg.augment.flip,
                            seed=seed, epoch=epoch, num_epochs=num_epochs, **kwargs)

    return build


def eval_dataset(splits, which, train_cfg, batch_size=None, image_size=None):
    """The un-augmented pipeline of one split (``which``: "val" or "test") with a
    recipe's input normalisation.

    ``image_size``: resize to a model's own (H, W) (e.g. ``teacher.input_size``).
    """
    return make_dataset(getattr(splits, which), batch_size=batch_size or train_cfg.batch_size,
                        training=False, input_norm=train_cfg.input_norm, mean=splits.mean,
                        std=splits.std, image_size=image_size)


def eval_datasets(splits, train_cfg, batch_size=None, image_size=None):
    """(validation, test) pipelines (``eval_dataset``)."""
    return tuple(eval_dataset(splits, k, train_cfg, batch_size, image_size)
                 for k in ("val", "test"))


def precise_bn_data(splits, train_cfg, seed, image_size=None, batch_size=128):
    """Training images for re-estimating BatchNorm statistics, in the model's input space.

    A fixed, seeded sample of ``train_cfg.precise_bn_images`` training images
    (un-augmented), as a dataset of batches; None when the setting is 0.
    """
    n = min(train_cfg.precise_bn_images, len(splits.train))
    if n <= 0:
        return None
    import numpy as np

    rows = np.sort(np.random.default_rng([seed, 0xB4]).permutation(len(splits.train))[:n])
    return make_dataset(splits.train.take(rows), batch_size=batch_size, training=False,
                        input_norm=train_cfg.input_norm, mean=splits.mean, std=splits.std,
                        image_size=image_size)

def steps_per_epoch(n, batch_size):
    return max(1, math.ceil(n / batch_size))


def classification_compile(model, optimizer):
    """Compiles ``model`` (logits output) with cross-entropy and accuracy."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        # XLA measured 7x slower than the default graph on this 2-core CPU.
        jit_compile=False)


# Tracing the forward pass costs about 0.17 s, one to two eager batches of a small
# model (0.15 s each, measured); up to this many batches eager is the faster way.
EAGER_MAX_BATCHES = 2


def evaluate_accuracy(model, dataset):
    """Top-1 accuracy of a logits model on a dataset of (x, y) batches.

    More than ``EAGER_MAX_BATCHES`` batches: the forward pass is traced once
    (one graph for every batch size). Run eagerly it took 7.4 s for the
    10,000 Fashion-MNIST test images on the ResNet-8 teacher, a cost paid by
    every trained model of a run.
    """
    import tensorflow as tf

    def hits(x, y):
        pred = tf.argmax(model(x, training=False), axis=-1, output_type=tf.int64)
        return tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(tf.reshape(y, [-1]), tf.int64)),
                                     tf.int64))

    batches = int(dataset.cardinality())
    if batches < 0 or batches > EAGER_MAX_BATCHES:  # unknown (-2) or infinite (-1): trace
        hits = tf.function(hits, reduce_retracing=True)
    right = total = 0
    for x, y in dataset:
        right += int(hits(x, y))
        total += int(y.shape[0])
    if not total:
        raise ValueError("evaluate_accuracy got no images.")
    return right / total
