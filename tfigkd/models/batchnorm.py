"""Precise BatchNorm statistics: re-estimate the moving mean and variance.

BatchNorm layers normalise with batch statistics while training but with
*moving* averages at inference. The moving averages trail the weights: after
a short first epoch (a few dozen steps at momentum 0.9) they still hold much
of their initial (0, 1), and a model that is fine in training mode validates
at chance. More generally they average statistics of weights that no longer
exist. The fix (as in "precise BN", Wu & Johnson 2021) is to recompute them
for the current weights just before they are used: run the network in
training mode over a fixed sample of training images and set each layer's
moving mean and variance to the average of its batch statistics. The weights
do not change, so training is unaffected; validation, the saved model and
its export all use statistics that match the weights they come with.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)


def batchnorm_layers(model):
    """The ``BatchNormalization`` layers of ``model`` (nested models included)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


class BatchNormEstimator:
    """Recomputes a functional model's BatchNorm moving statistics.

    The traced function that returns every BatchNorm layer's input is built
    once per model and reused, so re-estimating every epoch costs only the
    forward passes.

    Args:
        model: A functional Keras model (the student or teacher itself, not
            a wrapper such as ``tfigkd.Distiller``: pass ``distiller.student``).
    """

    def __init__(self, model):
        self.model = model
        self.layers = batchnorm_layers(model)
        self._fn = None
        if self.layers:
            try:
                inputs = [layer.input for layer in self.layers]
            except (AttributeError, ValueError) as e:
                raise ValueError(
                    f"Precise BatchNorm needs a functional model whose BatchNorm layers are "
                    f"each called once; {model.name}: {e}") from None
            probe = keras.Model(model.inputs, inputs)
            axes = [[a for a in range(len(layer.input.shape))
                     if a != layer.axis % len(layer.input.shape)] for layer in self.layers]

            def stats(x):
                feats = probe(x, training=True)
                feats = feats if isinstance(feats, (list, tuple)) else [feats]
                return [tf.nn.moments(tf.cast(f, tf.float32), ax) for f, ax in zip(feats, axes)]

            self._fn = tf.function(stats, reduce_retracing=True)

    def __call__(self, images, batch_size=128):
        """Sets every BatchNorm layer's moving statistics from ``images``.

        Args:
            images: (N, H, W, C) images in the model's input space (or a
                dataset of such batches).
            batch_size: Batch size of the forward passes (when ``images``
                is an array); the statistics are averages of batch statistics,
                as training sees them.

        Returns:
            The number of BatchNorm layers updated.
        """
        if not self.layers:
            return 0
        if isinstance(images, tf.data.Dataset):
            batches = images
        else:
            images = np.asarray(images, np.float32)
            batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
        sums, count = None, 0
        for x in batches:
            x = x[0] if isinstance(x, (tuple, list)) else x  # (images, labels) batches
            x = x["image"] if isinstance(x, dict) else x
            got = self._fn(tf.convert_to_tensor(x, tf.float32))
            vals = [(m.numpy().astype(np.float64), v.numpy().astype(np.float64)) for m, v in got]
            sums = vals if sums is None else [(a + m, b + v) for (a, b), (m, v) in zip(sums, vals)]
            count += 1
        if not count:
            raise ValueError("Precise BatchNorm got no images.")
        for layer, (m, v) in zip(self.layers, sums):
            layer.moving_mean.assign((m / count).astype(np.float32))
            layer.moving_variance.assign((v / count).astype(np.float32))
        return len(self.layers)


def recompute_batchnorm_statistics(model, images, batch_size=128):
    """One-off re-estimation; see ``BatchNormEstimator``. Returns the layer count."""
    return BatchNormEstimator(model)(images, batch_size)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Re-estimates BatchNorm statistics before each validation inside ``fit``.

    Runs at ``on_test_begin`` of the validation pass ``fit`` makes at the end
    of an epoch (not for a separate ``evaluate``), so the validation score,
    the best-epoch choice and the checkpoint saved at the epoch's end all see
    the same, re-estimated statistics.

    Args:
        images: (N, H, W, C) training images in the model's input space (a
            fixed sample; a few hundred suffice, see
            benchmarks/results/precise_bn_sample.json), or a ``tf.data``
            dataset of such batches (or of ``(images, labels)`` batches).
        batch_size: Forward-pass batch size (arrays).
    """

    def __init__(self, images, batch_size=128):
        super().__init__()
        self.images = (images if isinstance(images, tf.data.Dataset)
                       else np.asarray(images, np.float32))
        self.batch_size = int(batch_size)
        self._estimator = None
        self._in_fit_epoch = False

    def _target(self):
        return getattr(self.model, "student", self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._in_fit_epoch = True

    def on_test_begin(self, logs=None):
        if not self._in_fit_epoch:
            return
        self._in_fit_epoch = False
        if self._estimator is None or self._estimator.model is not self._target():
            self._estimator = BatchNormEstimator(self._target())
        n = self._estimator(self.images, self.batch_size)
        log.debug("Re-estimated the statistics of %d BatchNorm layers.", n)

    def on_epoch_end(self, epoch, logs=None):
        # No validation this epoch: re-estimate anyway, so the checkpoint
        # and the model saved from it carry matching statistics.
        if self._in_fit_epoch:
            self.on_test_begin()
