"""IG overlay augmentation (docs/method.md section 4), vectorised over a batch.

For each training image, after its crop and flip:
  1. s ~ exp(U(ln lo, ln hi)); map <- map ** s
  2. min-max normalise the map to [0, 1] per image, repeat it on all channels
  3. with probability p: image <- (1 - w) * image + w * map   (w = 0.5 in the paper)
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from tfigkd.data.pipeline import apply_geometry


def ig_overlay(images, maps, seed, *, p=0.1, exponent_range=(1.0, 2.0), weight=0.5):
    """Overlays IG maps on a batch of images with probability ``p`` each.

    Args:
        images: (B, H, W, C) float images in [0, 1].
        maps: (B, H, W) non-negative IG maps, one per image, in the same order.
        seed: Stateless seed, shape (2,) int.
        p: Probability that an image is overlaid.
        exponent_range: (lo, hi) of the log-uniform exponent s.
        weight: Blend weight of the map.

    Returns:
        (B, H, W, C) float32 images.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    maps = tf.cast(maps, tf.float32)
    b = tf.shape(images)[0]
    s_seed, p_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    lo, hi = exponent_range
    s = tf.exp(tf.random.stateless_uniform([b], s_seed, math.log(lo), math.log(hi)))
    m = tf.pow(tf.maximum(maps, 0.0), s[:, None, None])
    mn = tf.reduce_min(m, axis=[1, 2], keepdims=True)
    mx = tf.reduce_max(m, axis=[1, 2], keepdims=True)
    m = tf.math.divide_no_nan(m - mn, mx - mn)[..., None]
    blended = (1.0 - weight) * images + weight * m  # broadcasts the map over channels
    apply = tf.random.stateless_uniform([b], p_seed) < p
    return tf.where(apply[:, None, None, None], blended, images)


def overlay_transform(p, exponent_range=(1.0, 2.0), weight=0.5, align_geometry=False,
                      crop_pad=4):
    """A ``batch_transform`` for ``make_dataset`` that overlays ``batch["ig_map"]``.

    Args:
        p, exponent_range, weight: See ``ig_overlay``.
        align_geometry: Crop and flip each map with its image's own geometry
            (the authors' code did not: their maps stay un-augmented).
        crop_pad: The pipeline's crop padding (to replay the geometry).
    """

    def transform(batch, seed):
        maps = batch["ig_map"]
        if align_geometry and "geometry" in batch:
            maps = apply_geometry(maps[..., None], batch["geometry"], crop_pad)[..., 0]
        ov_seed = tf.random.experimental.stateless_fold_in(seed, 7)
        images = tf.cast(batch["image"], tf.float32) / 255.0
        out = ig_overlay(images, maps, ov_seed, p=p, exponent_range=exponent_range, weight=weight)
        batch = dict(batch)
        batch["image"] = out * 255.0  # back to the pipeline's pixel scale
        return batch

    return transform


@keras.saving.register_keras_serializable(package="tfigkd")
class IGOverlay(keras.layers.Layer):
    """Keras layer form of the overlay for ``fit`` users: ``layer([images, maps])``.

    Active only in training, like other augmentation layers; seeded.
    """

    def __init__(self, p=0.1, exponent_range=(1.0, 2.0), weight=0.5, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.p, self.exponent_range, self.weight, self.seed = p, tuple(exponent_range), weight, seed
        self._gen = tf.random.Generator.from_seed(seed)

    def call(self, inputs, training=False):
        images, maps = inputs
        if not training:
            return images
        seed = self._gen.uniform_full_int([2], tf.int64)
        return ig_overlay(images, maps, seed, p=self.p, exponent_range=self.exponent_range,
                          weight=self.weight)

    def get_config(self):
        return {**super().get_config(), "p": self.p, "exponent_range": list(self.exponent_range),
                "weight": self.weight, "seed": self.seed}
