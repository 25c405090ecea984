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
# Batch keys a ``batch_transform`` may add that travel to the model with the image
# (mixing: the partner's label and the mixing fraction, read by the Distiller's CE).
PASSED_TO_MODEL = ("mix_label", "mix_lambda")


def normalize(images, mode, mean=None, std=None):
    """uint8 (or float in [0, 255]) images -> float32 model inputs.

    Args:
        images: Tensor (..., C).
        mode: "unit" for x / 255 (the students), "dataset" for
            (x / 255 - mean) / std (the teacher), "raw" for x itself (0-255
            floats, as Keras Applications models with built-in preprocessing
            expect), "minus_one_one" for x / 127.5 - 1, "imagenet" for the
            ImageNet mean/std (``tfigkd.models.teacher_io.affine``).
        mean, std: Per-channel statistics for "dataset".
    """
    from tfigkd.models.teacher_io import NORMS, affine

    if mode == "raw":
        return tf.cast(images, tf.float32)  # exact: no divide-multiply round trip
    x = tf.cast(images, tf.float32) / 255.0
    if mode == "unit":
        return x
    if mode not in NORMS:
        raise UserError(f"Unknown input normalisation {mode!r}; use one of {', '.join(NORMS)}.")
    m, s = affine(mode, mean, std, int(x.shape[-1]) if x.shape[-1] is not None else None)
    return (x - tf.constant(m, tf.float32)) / tf.constant(s, tf.float32)


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
                 drop_remainder=False, batch_transform=None, extras=None,
                 epoch=0, num_epochs=1, image_size=None, with_view=False):
    """Builds the tf.data pipeline for one split.

    A training pipeline's order and augmentation are a pure function of
    ``(seed, epoch, batch number)``: epoch ``e`` is the same permutation and the
    same crops whichever process computes it and whatever ran before. That is
    what makes a resumed run identical to an uninterrupted one (it starts at
    ``epoch=k`` instead of replaying a random-number generator's history).

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
        epoch: Training only: the first epoch the dataset yields.
        num_epochs: Training only: how many consecutive epochs it yields
            (None: without end; give ``fit`` a ``steps_per_epoch`` of
            ``steps_per_epoch(len(subset), batch_size)``).
        image_size: (H, W) the images are resized to (bilinear) after
            augmentation and before normalisation, e.g. a teacher's own
            resolution (None: as stored).
        with_view: Training only: also yield each example's view number,
            ``epoch * N + position in that epoch's order``, which keys the
            per-view teacher-logit cache (``tfigkd.distill.view_cache``).

    Returns:
        A ``tf.data.Dataset``.
    """
    from tfigkd.data.lazy import is_lazy

    # Columns streamed from disk (images and extras such as IG maps of data
    # larger than memory) are read by position, one batch at a time.
    lazy_cols = {k: v for k, v in {"image": subset.x, **(extras or {})}.items() if is_lazy(v)}
    lazy = bool(lazy_cols)
    columns = {"label": subset.y.astype(np.int64), "index": subset.index.astype(np.int64),
               **{k: v for k, v in {"image": subset.x, **(extras or {})}.items()
                  if k not in lazy_cols}}
    if lazy:
        columns["position"] = np.arange(len(subset), dtype=np.int64)

    def with_images(batch):
        batch = dict(batch)
        if lazy:
            position = batch.pop("position")
            for name, rows in lazy_cols.items():
                value = tf.numpy_function(rows.read, [position], tf.as_dtype(rows.dtype),
                                          stateful=False)
                value.set_shape((None, *rows.shape[1:]))
                batch[name] = value
        return batch

    def transform(batch, bseed):
        batch = with_images(batch)
        if training and (crop_pad or flip):
            geo = sample_geometry(tf.shape(batch["image"])[0], bseed, crop_pad, flip)
            batch["geometry"] = geo
            batch["image"] = apply_geometry(batch["image"], geo, crop_pad)
        if batch_transform is not None:
            batch = batch_transform(batch, bseed)
        image = batch["image"]
        if image_size is not None and tuple(image.shape[1:3]) != tuple(image_size):
            image = tf.image.resize(tf.cast(image, tf.float32), image_size, antialias=True)
        x = normalize(image, input_norm, mean, std)
        keys = (("index",) if with_index else ()) + (("view",) if with_view else ()) \
            + tuple(k for k in PASSED_TO_MODEL if k in batch)
        if keys:
            return {"image": x, **{k: batch[k] for k in keys}}, batch["label"]
        return x, batch["label"]

    # Streamed data: a bounded number of float batches in flight (AUTOTUNE
    # buffers as many as it likes, which is what the memory budget rules out).
    parallel, ahead = (1, 1) if lazy else (AUTOTUNE, AUTOTUNE)
    if not training:
        if with_view:
            raise ValueError("with_view needs training=True: views are training batches.")
        n = len(subset)
        if lazy:
            ds = tf.data.Dataset.from_tensor_slices(columns).batch(
                batch_size, drop_remainder=drop_remainder)
        else:
            # Whole batches sliced from in-memory tensors: slicing and re-batching
            # element by element cost up to a fifth of a small teacher's forward pass
            # (benchmarks/teacher_inference.py).
            tensors = {k: tf.constant(v) for k, v in columns.items()}
            nb = n // batch_size if drop_remainder else -(-n // batch_size)
            ds = tf.data.Dataset.range(nb).map(
                lambda b: {k: v[b * batch_size:tf.minimum((b + 1) * batch_size, n)]
                           for k, v in tensors.items()})
        ds = ds.map(lambda b: transform(b, tf.zeros([2], tf.int64)),
                    num_parallel_calls=parallel, deterministic=True)
        return _steady(ds.prefetch(ahead))
    n = len(subset)
    batches = n // batch_size if drop_remainder else -(-n // batch_size)
    if batches < 1:
        raise UserError(f"{n} training examples cannot fill one batch of {batch_size} with "
                        "drop_remainder; lower the batch size.")
    tensors = {k: tf.constant(v) for k, v in columns.items()}
    base = tf.constant([int(seed) & 0x7FFFFFFF, 0x1D5EED], tf.int64)

    def epoch_batches(e):
        eseed = tf.random.experimental.stateless_fold_in(base, e)
        order = tf.argsort(tf.random.stateless_uniform([n], eseed))
        starts = tf.range(batches, dtype=tf.int64) * batch_size

        def gather(b, start):
            idx = order[start:tf.minimum(start + batch_size, n)]
            batch = {k: tf.gather(v, idx) for k, v in tensors.items()}
            if with_view:
                batch["view"] = e * n + start + tf.range(tf.size(idx, out_type=tf.int64))
            # One stateless augmentation seed per (seed, epoch, batch).
            return batch, tf.random.experimental.stateless_fold_in(eseed, b + 1)

        return tf.data.Dataset.zip(tf.data.Dataset.range(batches),
                                   tf.data.Dataset.from_tensor_slices(starts)).map(gather)

    stop = np.iinfo(np.int64).max if num_epochs is None else epoch + num_epochs
    ds = tf.data.Dataset.range(epoch, stop).flat_map(epoch_batches)
    ds = ds.map(transform, num_parallel_calls=parallel, deterministic=True)
    return _steady(ds.prefetch(ahead))


def _steady(ds):
    """``ds`` without tf.data's runtime autotuning.

    On this 2-core CPU the autotuner's background optimisation cost teacher
    inference a third of its speed in about half of the runs (the clean logit
    cache and the per-view cache at 0.66x the bare forward pass, bimodal from
    run to run); with it off they ran at 0.95-1.0x in every run
    (benchmarks/teacher_inference.py). AUTOTUNE parallelism and prefetch then
    keep their static defaults.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
