"""Unlabelled training images: distillation's common real case.

A few labelled photos and many unlabelled ones from the app: the unlabelled
images join the training split with label ``UNLABELED`` (-1) and get only the
distillation term (``tfigkd.distill.terms.SupervisedCE`` masks them out of the
cross-entropy). Two ways in:

- ``data.unlabeled: PATH``: an ``.npz`` with an array ``x`` (or
  ``x_unlabeled``), uint8 NHWC, or a folder of images at any depth, brought to
  the training images' size and colour mode;
- ``data.labeled_subset: N``: keep the labels of N stratified training images
  and hide the others' (the few-labels setting of a study, on data whose
  labels are known).

Unlabelled images change the training split's fingerprint, so every stored
map, logit cache or student made without them is refused.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tfigkd.data.split import Subset, fingerprint, stratified_subset
from tfigkd.errors import UserError

log = logging.getLogger(__name__)

UNLABELED = -1


def labeled_mask(labels):
    """True where an example has a label."""
    return np.asarray(labels) >= 0


def labeled_only(splits):
    """``splits`` with the unlabelled images dropped from its training split (itself if none).

    For what learns from labels alone: a teacher trained from scratch, a
    student without a teacher term.
    """
    mask = labeled_mask(splits.train.y)
    if mask.all():
        return splits
    import dataclasses

    return dataclasses.replace(splits, train=splits.train.take(np.flatnonzero(mask)))


def read_unlabeled(path, shape, resize="stretch"):
    """Unlabelled images as uint8 ``(N, *shape)``.

    Args:
        path: An ``.npz`` (array ``x`` or ``x_unlabeled``) or a folder of images.
        shape: (H, W, C) of the training images; folder images are brought to it.
        resize: How folder images of another size are fitted (as ``data.resize``).

    Raises:
        UserError: Naming the file and the fix, for a missing array, a wrong
            size or an empty folder.
    """
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        return _read_folder(path, shape, resize)
    try:
        with np.load(path) as z:
            key = next((k for k in ("x", "x_unlabeled") if k in z.files), None)
            if key is None:
                raise UserError(f"data.unlabeled: {path} has no array 'x' or 'x_unlabeled' "
                                f"(it has {', '.join(z.files) or 'none'}); save the images as x.")
            x = z[key]
    except (OSError, ValueError) as e:
        raise UserError(f"data.unlabeled: {path} is not a readable .npz ({e}); give an .npz "
                        "with an array 'x' or a folder of images.") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype != np.uint8 or tuple(x.shape[1:]) != tuple(shape):
        raise UserError(f"data.unlabeled: {path} holds {x.dtype} images of shape "
                        f"{tuple(x.shape[1:])}; the training images are uint8 {tuple(shape)}. "
                        "Save them as uint8 of that shape, or give a folder of images.")
    return x


def _read_folder(root, shape, resize):
    from tfigkd.data.images import EXTS, _decode

    files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                   if f.lower().endswith(EXTS))
    if not files:
        raise UserError(f"data.unlabeled: no images ({', '.join(EXTS)}) under {root}.")
    mode = "L" if shape[-1] == 1 else "RGB"
    return np.stack([_decode(f, tuple(shape[:2]), resize, mode) for f in files]).astype(np.uint8)


def with_unlabeled(splits, data_cfg):
    """``splits`` with the config's unlabelled images added to (or made of) its training split.

    Returns ``splits`` itself when the config asks for none.
    """
    from tfigkd.data.lazy import is_lazy

    if not data_cfg.unlabeled and not data_cfg.labeled_subset:
        return splits
    train = splits.train
    if is_lazy(train.x):
        raise UserError("data.unlabeled / labeled_subset work on data held in memory; this "
                        "split is streamed from disk. Raise data.memory_budget_mb.")
    y = train.y.copy()
    if data_cfg.labeled_subset:
        keep = stratified_subset(y, data_cfg.labeled_subset, data_cfg.seed + 104729)
        hidden = np.setdiff1d(np.arange(len(y)), keep)
        y[hidden] = UNLABELED
    x, index = train.x, train.index
    if data_cfg.unlabeled:
        xu = read_unlabeled(data_cfg.unlabeled, splits.input_shape, data_cfg.resize)
        # Indices past every labelled one, so they never collide with train/val rows.
        start = int(max(train.index.max(), splits.val.index.max() if len(splits.val) else 0)) + 1
        x = np.concatenate([x, xu])
        y = np.concatenate([y, np.full(len(xu), UNLABELED, y.dtype)])
        index = np.concatenate([index, np.arange(start, start + len(xu), dtype=index.dtype)])
    new = Subset(x, y, index)
    n_lab = int(labeled_mask(y).sum())
    log.info("Training split: %d labelled and %d unlabelled images.", n_lab, len(y) - n_lab)
    if n_lab == 0:
        raise UserError("The training split has no labelled image left; raise "
                        "data.labeled_subset.")
    import dataclasses

    return dataclasses.replace(splits, train=new, fingerprint=fingerprint(new))
