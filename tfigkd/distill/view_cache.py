"""The per-view teacher-logit cache (``student.teacher_mode: per_view``).

Consistent KD (Beyer et al., CVPR 2022) needs the teacher's logits of the
exact view the student trains on: the crop, the flip, the overlay and the
mixing of that step. Online KD runs the teacher every step. FKD (Shen &
Xing, ECCV 2022) stores them instead, per augmented view; tfigkd can,
because a training view is a pure function of (seed, epoch, batch)
(``tfigkd.data.pipeline.make_dataset``). This module replays every view of a
run once, in batched inference, and stores the logits in view order
(``view = epoch * N + position``); the Distiller then gathers them by view
number (``Distiller(cached_key="view")``), giving the same loss as online KD
at the cost of a table lookup.

A cache is keyed by its **view recipe**: everything the views and the
teacher's outputs depend on (data fingerprint, seed, epochs, batch size,
crop/flip, overlay and mixing settings, the teacher file, its input
normalisation and size, the top-k packing). Modes, alpha, T (unless top-k)
and students that see the same views share one cache; any other recipe gets
its own folder, and a cache whose manifest does not match the recipe it is
read for is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time

import numpy as np

from tfigkd.distill.logit_cache import LogitCacheMismatchError
from tfigkd.freshness import recipe_diff
from tfigkd.io import atomic_path, file_sha256, read_json, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LOGITS_FILE = "view_logits.npy"
MANIFEST = "manifest.json"


def recipe_key(recipe):
    """A short stable name of a view recipe (its folder name)."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def compute_view_logits(teacher_fn, dataset, n_views, width):
    """Runs ``teacher_fn`` over every view of ``dataset`` and orders the rows by view.

    Args:
        teacher_fn: ``fn(student_images) -> rows``: the teacher on the student's
            exact input batch (a ``tf.function``).
        dataset: Training batches ``({"image", "view", ...}, label)`` of every epoch.
        n_views: epochs * N.
        width: Row width (classes, or 2k + 1 packed top-k).

    Returns:
        (n_views, width) float32.
    """
    out = np.full((n_views, width), np.nan, np.float32)
    for x, _ in dataset:
        out[x["view"].numpy()] = np.asarray(teacher_fn(x["image"]))
    missing = int(np.isnan(out[:, 0]).sum())
    if missing:
        raise RuntimeError(f"{missing} views were not produced by the training pipeline.")
    return out


def load_or_compute(cache_dir, recipe, compute, teacher_path):
    """The cached view logits of ``recipe``, computed and written first when missing.

    Args:
        cache_dir: This recipe's folder (``DIR/teacher_views/<recipe_key>``).
        recipe: The view recipe (JSON-able dict).
        compute: ``fn() -> (n_views, width) array``.
        teacher_path: The teacher file (checked against the recipe's SHA-256).

    Raises:
        LogitCacheMismatchError: The folder holds a cache of another recipe
            (a foreign or stale copy) or a damaged file; the message names the fix.
    """
    from tfigkd.lock import folder_lock

    fix = f"delete {cache_dir} and rerun to recompute it"
    with folder_lock(cache_dir):
        mpath = os.path.join(cache_dir, MANIFEST)
        path = os.path.join(cache_dir, LOGITS_FILE)
        if os.path.exists(mpath):
            man = read_json(mpath)
            diff = recipe_diff({"format": man.get("format"), **(man.get("recipe") or {})},
                               {"format": FORMAT_VERSION, **recipe})
            if diff:
                raise LogitCacheMismatchError(
                    f"{cache_dir} holds teacher logits of other views ({diff}); {fix}.")
            if not os.path.exists(path) or file_sha256(path) != man["sha256"]:
                raise LogitCacheMismatchError(f"{path} is missing or corrupt (checksum); {fix}.")
            return np.load(path)
        if recipe.get("teacher_sha256") != file_sha256(teacher_path):
            raise LogitCacheMismatchError(f"The view recipe names another teacher than "
                                          f"{teacher_path}; {fix}.")
        t0 = time.time()
        logits = np.asarray(compute(), np.float32)
        seconds = time.time() - t0
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, logits)
        write_json(mpath, {"format": FORMAT_VERSION, "recipe": recipe,
                           "views": int(len(logits)), "width": int(logits.shape[1]),
                           "sha256": file_sha256(path), "seconds": seconds})
        log.info("Per-view teacher logits: %d views in %.0f s (%.0f views/s) -> %s",
                 len(logits), seconds, len(logits) / max(seconds, 1e-9), cache_dir)
        return logits
