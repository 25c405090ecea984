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


def overlay_dataset(images, labels, maps, *, batch_size=64, p=0.1, exponent_range=(1.0, 2.0),
                    weight=0.5, seed=0, shuffle=True):
    """A ``tf.data`` training set with the IG overlay, for plain ``model.fit``.

    Keeps each image joined to its own map through shuffling (the
    misalignment of the authors' code cannot happen here), then overlays
    per batch with fresh randomness every epoch::

        ds = overlay_dataset(x_train, y_train, maps, p=0.1, seed=0)
        student.fit(ds, epochs=10)          # or a tfigkd.Distiller

    Args:
        images: (N, H, W, C) uint8 images in [0, 255] or floats in [0, 1].
        labels: (N,) integer labels.
        maps: (N, H, W) non-negative IG maps aligned with ``images``
            (e.g. from ``tfigkd.integrated_gradients`` + ``ig_map``).
        batch_size, p, exponent_range, weight: See ``ig_overlay``.
        seed: Seeds the shuffle and the overlay; different every epoch.
        shuffle: Reshuffle the examples every epoch.

    Returns:
        A dataset of ``(images float32 in [0, 1], labels)`` batches.
    """
    import numpy as np

    from tfigkd.errors import UserError

    images, labels, maps = np.asarray(images), np.asarray(labels), np.asarray(maps, np.float32)
    if not len(images) == len(labels) == len(maps):
        raise UserError(f"overlay_dataset: {len(images)} images, {len(labels)} labels and "
                        f"{len(maps)} maps; pass one map and one label per image.")
    if maps.shape[1:] != images.shape[1:3]:
        raise UserError(f"overlay_dataset: maps are {maps.shape[1:]} but images are "
                        f"{images.shape[1:3]}; compute the maps at the images' size.")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    ds = tf.data.Dataset.from_tensor_slices((images, labels, maps))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds))

    def apply(batch, s):
        x, y, m = batch
        x = tf.cast(x, tf.float32) / scale
        return ig_overlay(x, m, s, p=p, exponent_range=exponent_range, weight=weight), y

    return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
