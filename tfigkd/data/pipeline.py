"""tf.data input pipelines: cache uint8, shuffle, batch, vectorised augment, prefetch.

Augmentation runs on whole batches (one gather per axis) rather than per
image, which is what keeps the CPU input pipeline ahead of the model. The
random geometry is drawn explicitly (``sample_geometry``) so that the same
crop and flip can be applied to a second tensor, such as an IG map.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfigkd.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE


def normalize(images, mode, mean=None, std=None):
    """uint8 (or float in [0, 255]) images -> float32 model inputs.

    Args:
        images: Tensor (..., C).
        mode: "unit" for x / 255 (the students), "dataset" for
            (x / 255 - mean) / std (the teacher).
        mean, std: Per-channel statistics for "dataset".
    """
    x = tf.cast(images, tf.float32) / 255.0
    if mode == "unit":
        return x
    if mode == "dataset":
        return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    raise UserError(f"Unknown input normalisation {mode!r}; use 'unit' or 'dataset'.")


def sample_geometry(batch_size, seed, pad, flip):
    """Draws per-example crop offsets and flip flags from a stateless seed.

    Returns:
        Dict with int32 ``oy``, ``ox`` in [0, 2*pad] and bool ``flip``, each (B,).
    """
    s1, s2, s3 = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    oy = tf.random.stateless_uniform([batch_size], s1, 0, 2 * pad + 1, tf.int32)
    ox = tf.random.stateless_uniform([batch_size], s2, 0, 2 * pad + 1, tf.int32)
    if flip:
        fl = tf.random.stateless_uniform([batch_size], s3) < 0.5
    else:
        fl = tf.zeros([batch_size], tf.bool)
    return {"oy": oy, "ox": ox, "flip": fl}


def apply_geometry(images, geometry, pad):
    """Zero-pads by ``pad``, crops back to HxW at the offsets, then flips.

    Works on any (B, H, W, C) tensor, so an image and its map can share it.
    """
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    if pad:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        rows = geometry["oy"][:, None] + tf.range(h)[None, :]
        cols = geometry["ox"][:, None] + tf.range(w)[None, :]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    return tf.where(geometry["flip"][:, None, None, None],
                    tf.reverse(images, axis=[2]), images)


def make_dataset(subset, *, batch_size, training, input_norm="unit", mean=None,
                 std=None, crop_pad=4, flip=True, seed=0, with_index=False,
                 drop_remainder=False, batch_transform=None, extras=None):
    """Builds the tf.data pipeline for one split.

    Args:
        subset: A ``tfigkd.data.Subset`` (uint8 images, labels, indices).
        batch_size: Batch size.
        training: Shuffle and augment (crop + flip) when True.
        input_norm: "unit" or "dataset" (see ``normalize``).
        mean, std: Dataset statistics for "dataset".
        crop_pad: Random-crop padding (0 disables the crop).
        flip: Random horizontal flip.
        seed: Seed for shuffling and augmentation; the same seed gives the
            same batches.
        with_index: Yield ``({"image": x, "index": i}, y)`` instead of ``(x, y)``.
        drop_remainder: Drop the last partial batch.
        batch_transform: Optional ``fn(batch_dict, seed) -> batch_dict`` run on
            the uint8 batch dict (keys image, label, index, geometry) after
            the geometry is drawn and before normalisation; later stages hook
            IG overlays in here.
        extras: Optional ``{name: array}`` of per-example arrays aligned with
            ``subset`` (e.g. IG maps); they travel with their example through
            shuffling and batching and reach ``batch_transform``.

    Returns:
        A ``tf.data.Dataset``.
    """
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": subset.x, "label": subset.y.astype(np.int64),
         "index": subset.index.astype(np.int64), **(extras or {})}).cache()
    if training:
        ds = ds.shuffle(len(subset), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # One seed pair per batch; re-randomised each epoch but reproducible.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)

    def transform(batch, bseed):
        batch = dict(batch)
        if training and (crop_pad or flip):
            geo = sample_geometry(tf.shape(batch["image"])[0], bseed, crop_pad, flip)
            batch["geometry"] = geo
            batch["image"] = apply_geometry(batch["image"], geo, crop_pad)
        if batch_transform is not None:
            batch = batch_transform(batch, bseed)
        x = normalize(batch["image"], input_norm, mean, std)
        if with_index:
            return {"image": x, "index": batch["index"]}, batch["label"]
        return x, batch["label"]

    ds = ds.map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)
