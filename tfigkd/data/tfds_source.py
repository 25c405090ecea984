"""Any tensorflow-datasets image-classification dataset as a data source (``source: tfds``)."""

from __future__ import annotations

import logging

import numpy as np

from tfigkd.errors import UserError

log = logging.getLogger(__name__)


def load_tfds(name, data_dir=None, download=False, image_size=None, resize="stretch",
              color=None, progress=True):
    """Loads ``name`` (e.g. ``cifar10``, ``imagenette/160px``) with tfds' supervised keys.

    Uses its ``train`` split and its ``test`` split if it has one (else the
    caller carves a test split from train). Images of varying size need
    ``image_size``; they are resized one by one as they are read.

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
    out = []
    for split, ds in zip(parts, loaded):
        total = info.splits[split].num_examples if split in known else None
        out += _to_arrays(ds, f"{name} {split}", image_size, resize, color, progress, total)
    names = list(getattr(info.features[label_key], "names", None) or [])
    if not names:
        names = [str(i) for i in range(int(max(out[1].max(), out[3].max() if len(out) > 2
                                                else 0)) + 1)]
    if len(parts) == 1:
        out += [None, None]
    return (*out, names)


def _to_arrays(ds, what, image_size, resize, color, progress, total):
    from PIL import Image
    from tqdm.auto import tqdm

    from tfigkd.data.images import fit_image

    import tensorflow_datasets as tfds

    xs, ys = [], []
    for x, y in tqdm(tfds.as_numpy(ds), total=total, desc=f"Reading {what}", unit="img",
                     disable=not progress):
        x = np.asarray(x, np.uint8)
        if image_size or color:
            im = Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)
            mode = {"rgb": "RGB", "grayscale": "L", None: im.mode}[color]
            x = np.asarray(fit_image(im.convert(mode), image_size, resize), np.uint8)
            if x.ndim == 2:
                x = x[..., None]
        xs.append(x)
        ys.append(int(y))
    if not xs:
        raise UserError(f"{what} split holds no images.")
    return [np.stack(xs), np.asarray(ys, np.int64)]
