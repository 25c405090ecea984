"""Any tensorflow-datasets image-classification dataset as a data source (``source: tfds``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from tfigkd.errors import UserError

log = logging.getLogger(__name__)


def load_tfds(name, data_dir=None, download=False, image_size=None, resize="stretch",
              color=None, progress=True, budget_bytes=None, cache_dir=None):
    """Loads ``name`` (e.g. ``cifar10``, ``imagenette/160px``) with tfds' supervised keys.

    Uses its ``train`` split and its ``test`` split if it has one (else the
    caller carves a test split from train). Images of varying size need
    ``image_size``; they are resized one by one as they are read.

    Splits whose decoded images would exceed ``budget_bytes`` are written,
    row by row, to a uint8 ``.npy`` in the image cache (keyed like the
    image-folder cache: dataset, version, split, size settings) and returned
    memory-mapped, so ``load_splits`` streams them as it streams a folder.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``; ``x_test`` is None
        without a test split.
    """
    import tensorflow_datasets as tfds

    opts = dict(data_dir=data_dir, download=download, as_supervised=True)
    try:
        train, info = tfds.load(name, split="train", with_info=True, **opts)
    except Exception as e:  # noqa: BLE001 - tfds raises many types for "not prepared"
        reason = " ".join(str(e).split())[:200]
        raise UserError(f"tfds could not load the train split of {name!r} from data_dir="
                        f"{data_dir!r} (download={download}): {reason}; prepare it once with "
                        "data.download: true on a machine with internet, or fix data.name.") from None
    if not info.supervised_keys:
        raise UserError(f"tfds dataset {name!r} has no (image, label) supervised keys; "
                        "tfigkd needs an image-classification dataset.")
    image_key, label_key = info.supervised_keys[:2]
    parts, loaded = ["train"], [train]
    known = list(info.splits.keys())  # empty when tfds has no metadata (e.g. mock data)
    if "test" in known or not known:
        try:
            loaded.append(tfds.load(name, split="test", **opts))
            parts.append("test")
        except Exception:  # noqa: BLE001 - no test split: carve one from train
            if known:
                raise
    feature = info.features[image_key]
    shape = tuple(feature.shape)
    if (None in shape[:2]) and not image_size:
        raise UserError(f"tfds dataset {name!r} has images of varying size {shape}; set "
                        "data.image_size: [H, W] (and data.resize: stretch, crop or pad).")
    counts = {split: (info.splits[split].num_examples if split in known else None)
              for split in parts}
    out_shape = _out_shape(shape, image_size, color)
    if budget_bytes is not None and None not in out_shape:
        for split, ds in zip(parts, loaded):
            if counts[split] is None:  # no metadata (mock data): count the labels
                counts[split] = sum(1 for _ in ds.map(lambda x, y: y))
        need = sum(counts.values()) * int(np.prod(out_shape))
    else:
        need = 0
    out = []
    for split, ds in zip(parts, loaded):
        what = f"{name} {split}"
        if budget_bytes is not None and need > budget_bytes:
            key = {"v": 1, "name": name, "version": str(info.version), "split": split,
                   "data_dir": os.path.abspath(os.path.expanduser(data_dir)) if data_dir else None,
                   "settings": {"image_size": list(image_size) if image_size else None,
                                "resize": resize, "color": color},
                   "count": counts[split], "shape": list(out_shape)}
            out += _to_cache(ds, what, key, cache_dir, image_size, resize, color, progress)
        else:
            out += _to_arrays(ds, what, image_size, resize, color, progress, counts[split])
    names = list(getattr(info.features[label_key], "names", None) or [])
    if not names:
        names = [str(i) for i in range(int(max(out[1].max(), out[3].max() if len(out) > 2
                                                else 0)) + 1)]
    if len(parts) == 1:
        out += [None, None]
    return (*out, names)


def _out_shape(shape, image_size, color):
    """(H, W, C) of a converted image (None where it varies)."""
    h, w = (int(v) for v in image_size) if image_size else shape[:2]
    c = {"rgb": 3, "grayscale": 1, None: shape[2] if len(shape) > 2 else 1}[color]
    return (h, w, c)


def _examples(ds, what, image_size, resize, color, progress, total):
    """``(image uint8 HWC, label)`` pairs, converted to the size and colour settings."""
    from PIL import Image
    from tqdm.auto import tqdm

    from tfigkd.data.images import fit_image

    import tensorflow_datasets as tfds

    for x, y in tqdm(tfds.as_numpy(ds), total=total, desc=f"Reading {what}", unit="img",
                     disable=not progress):
        x = np.asarray(x, np.uint8)
        if image_size or color:
            im = Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)
            mode = {"rgb": "RGB", "grayscale": "L", None: im.mode}[color]
            x = np.asarray(fit_image(im.convert(mode), image_size, resize), np.uint8)
            if x.ndim == 2:
                x = x[..., None]
        yield x, int(y)


def _to_arrays(ds, what, image_size, resize, color, progress, total):
    xs, ys = [], []
    for x, y in _examples(ds, what, image_size, resize, color, progress, total):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise UserError(f"{what} split holds no images.")
    return [np.stack(xs), np.asarray(ys, np.int64)]


def _to_cache(ds, what, key, cache_dir, image_size, resize, color, progress):
    """One split through the disk cache: (images memmap, labels); decoded once per key."""
    from tfigkd.data.images import cache_root
    from tfigkd.data.lazy import NpyRowWriter
    from tfigkd.io import atomic_path, read_json, write_json

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    folder = os.path.join(cache_root(cache_dir), f"tfds-{digest[:24]}")
    images, labels, meta = (os.path.join(folder, f) for f in ("images.npy", "labels.npy",
                                                                "meta.json"))
    if os.path.isfile(meta):
        try:
            if read_json(meta).get("key") != key:
                raise ValueError("its record does not match")
            x, y = np.load(images, mmap_mode="r"), np.load(labels)
            if x.shape != (key["count"], *key["shape"]) or len(y) != len(x):
                raise ValueError(f"images {x.shape} do not match its record")
            log.info("tfds cache hit: %s.", folder)
            return [x, y]
        except (OSError, ValueError, UserError) as e:
            log.warning("Refusing the tfds cache %s (%s); reading the dataset again.", folder, e)
    shape = (key["count"], *key["shape"])
    log.info("%s: writing %d images (%.1f MB) to the disk cache %s, to stream them.", what,
             shape[0], np.prod(shape) / 1e6, folder)
    os.makedirs(folder, exist_ok=True)
    ys = np.zeros(shape[0], np.int64)
    n = 0
    with atomic_path(images) as tmp, NpyRowWriter(tmp, shape, np.uint8) as out:
        for x, y in _examples(ds, what, image_size, resize, color, progress, shape[0]):
            if n >= shape[0] or x.shape != shape[1:]:
                raise UserError(f"{what}: image {n} is {x.shape} (expected {shape[1:]}) or the "
                                f"split holds more than the {shape[0]} images its metadata "
                                "says; set data.image_size, or prepare the dataset again.")
            out.write(n, x[None])
            ys[n] = y
            n += 1
        if n != shape[0]:
            raise UserError(f"{what}: read {n} images, its metadata says {shape[0]}; prepare "
                            "the dataset again.")
    with atomic_path(labels) as tmp:
        np.save(tmp, ys)
    write_json(meta, {"key": key})  # last: a cache without its record is never read
    return [np.load(images, mmap_mode="r"), ys]
