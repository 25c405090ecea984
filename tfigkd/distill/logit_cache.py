"""Cached teacher logits on disk, stored like the IG maps: by example index,
fingerprinted, and refused when they belong to other data or another teacher.

The authors saved teacher outputs in a shuffled, augmented loader order and
read them back by position (docs/method.md section 8). Here every row carries the
example's index, the file records the data fingerprint and the teacher's
SHA-256, and ``load_logits`` joins by index, so a row can never reach the
wrong image.

Cached logits are the teacher's view of the *un-augmented* training image;
the student sees a random crop/flip of it. That is the usual trade (one
teacher pass instead of one per step); ``teacher_mode: online`` keeps the
exact per-batch teacher.
"""

from __future__ import annotations

import logging
import os
import weakref

import numpy as np

from tfigkd.errors import UserError
from tfigkd.freshness import is_current
from tfigkd.io import atomic_path, file_sha256, read_json, write_json

log = logging.getLogger(__name__)

LOGITS_FILE = "logits.npz"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class LogitCacheMismatchError(UserError):
    """The cached logits do not belong to this data or teacher, or are damaged."""


class IndexedRows:
    """Rows of an array looked up by example index inside a tf.function.

    ``rows(index_batch)`` gathers the rows whose example indices are given;
    an index with no row fails loudly instead of reading a wrong row.
    """

    def __init__(self, values, index):
        import tensorflow as tf

        keys = tf.constant(index, tf.int64)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(tf.size(keys), dtype=tf.int64)),
            default_value=-1)
        self.values = tf.constant(values, tf.float32)

    def __call__(self, index_batch):
        import tensorflow as tf

        rows = self.table.lookup(tf.cast(index_batch, tf.int64))
        tf.debugging.assert_non_negative(rows, "An example index has no cached teacher logits.")
        return tf.gather(self.values, rows)


_FORWARD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def teacher_forward(teacher):
    """``teacher(x, training=False)`` as a tf.function, traced once per teacher.

    Calling the Keras model eagerly runs its layers one op at a time from
    Python; on the main job's ResNet-8 that overhead held the cache to 0.33x
    of the bare forward pass, traced it runs at 0.86x
    (benchmarks/results/teacher_inference.json). Kept per teacher so that
    several caches of one teacher (views, unlabelled images) trace once.
    """
    import tensorflow as tf

    if teacher not in _FORWARD:
        # A weak reference: the traced function must not keep its key alive.
        ref = weakref.ref(teacher)
        _FORWARD[teacher] = tf.function(lambda x: ref()(x, training=False),
                                        reduce_retracing=True)
    return _FORWARD[teacher]


def compute_logits(teacher, subset, input_norm, mean, std, batch_size=256, strategy=None):
    """Teacher logits of every image in ``subset`` (un-augmented), in its order.

    ``strategy``: local replicas each batch is split over
    (``tfigkd.distribute.inference_strategy``).
    """
    from tfigkd.data import make_dataset
    from tfigkd.distribute import in_scope, replicated
    from tfigkd.models.teacher_io import teacher_size

    ds = make_dataset(subset, batch_size=batch_size, training=False, input_norm=input_norm,
                      mean=mean, std=std, image_size=teacher_size(teacher))
    if strategy is None or strategy.num_replicas_in_sync < 2:
        forward = teacher_forward(teacher)
        return np.concatenate([forward(x).numpy() for x, _ in ds]).astype(np.float32)
    model = in_scope(teacher, strategy)
    forward = replicated(lambda x: model(x, training=False), strategy)
    return np.concatenate([np.asarray(forward(x)) for x, _ in ds]).astype(np.float32)


def write_logits(cache_dir, subset, logits, fingerprint, teacher_hash, input_norm, top_k=None):
    """Writes ``logits`` (aligned with ``subset``) and then its manifest, both atomically.

    The manifest is written last: its presence marks a finished cache.
    ``top_k``: ``{"k", "temperature", "num_classes"}`` when ``logits`` are
    packed top-k rows (``tfigkd.distill.topk``).
    """
    logits = np.asarray(logits, np.float32)
    if logits.ndim != 2 or len(logits) != len(subset):
        raise UserError(f"logits must be (N={len(subset)}, classes), got {logits.shape}.")
    path = os.path.join(cache_dir, LOGITS_FILE)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, index=np.asarray(subset.index, np.int64), logits=logits)
    manifest = {"format": FORMAT_VERSION, "fingerprint": fingerprint,
                "teacher_sha256": teacher_hash, "input_norm": input_norm,
                "count": int(len(logits)), "num_classes": int(logits.shape[1]),
                "file": LOGITS_FILE, "sha256": file_sha256(path)}
    if top_k:
        manifest.update(num_classes=int(top_k["num_classes"]), top_k=int(top_k["k"]),
                        temperature=float(top_k["temperature"]))
    write_json(os.path.join(cache_dir, MANIFEST), manifest)
    return manifest


def load_logits(cache_dir, subset, fingerprint, teacher_hash):
    """The cached logits for ``subset``, in ``subset``'s order.

    Raises:
        LogitCacheMismatchError: With the reason and the fix, if the cache is
            missing, damaged, or made from other data or another teacher.
    """
    mpath = os.path.join(cache_dir, MANIFEST)
    fix = f"delete {cache_dir} and rerun to recompute it"
    if not os.path.exists(mpath):
        raise LogitCacheMismatchError(f"No finished teacher-logit cache in {cache_dir} "
                                      "(manifest.json missing); rerun to compute it.")
    man = read_json(mpath)
    if man.get("fingerprint") != fingerprint:
        raise LogitCacheMismatchError(
            f"{cache_dir} holds logits of other data (fingerprint {str(man.get('fingerprint'))[:12]} "
            f"vs {fingerprint[:12]}); {fix}.")
    if man.get("teacher_sha256") != teacher_hash:
        raise LogitCacheMismatchError(f"{cache_dir} holds logits of another teacher; {fix}.")
    path = os.path.join(cache_dir, man["file"])
    if not os.path.exists(path) or file_sha256(path) != man["sha256"]:
        raise LogitCacheMismatchError(f"{path} is missing or corrupt (checksum); {fix}.")
    with np.load(path) as z:
        index, logits = z["index"], z["logits"]
    if len(np.unique(index)) != len(index):
        raise LogitCacheMismatchError(f"{path} holds duplicate example indices; {fix}.")
    order = np.argsort(index)
    pos = np.searchsorted(index[order], subset.index)
    pos = np.clip(pos, 0, len(index) - 1)
    found = index[order][pos] == subset.index
    if not found.all():
        raise LogitCacheMismatchError(
            f"{path} has no logits for {int((~found).sum())} training examples "
            f"(e.g. index {int(subset.index[~found][0])}); {fix}.")
    return logits[order][pos]


def cached_teacher_logits(cache_dir, teacher_path, splits, input_norm, teacher=None, top_k=0,
                          temperature=1.0, strategy=None):
    """Loads the cache when it matches, else computes and writes it.

    Args:
        cache_dir: Folder of the cache (``DIR/teacher_logits`` in a run).
        teacher_path: The teacher ``.keras`` (its SHA-256 keys the cache).
        splits: ``SplitData``; logits are for ``splits.train``.
        input_norm: The teacher's input normalisation.
        teacher: The loaded teacher, to avoid loading it twice.
        top_k: Keep only the teacher's k largest logits per example, as
            log-probabilities at ``temperature`` plus the log of the remaining
            mass (``tfigkd.distill.topk``); 0 or >= classes: all logits.
        temperature: The KD temperature (top-k caches depend on it).
        strategy: Local replicas the inference is spread over (``compute_logits``).

    Returns:
        (N_train, classes) float32 logits aligned with ``splits.train``, or
        (N_train, 2k + 1) packed top-k rows when ``top_k`` is in effect.
    """
    from tfigkd.distill.topk import cache_bytes, pack_top_k, top_k_in_effect

    thash = file_sha256(teacher_path)
    k = top_k_in_effect(top_k, splits.num_classes)
    want = {"fingerprint": splits.fingerprint, "teacher_sha256": thash, "top_k": k,
            "temperature": float(temperature) if k else None}
    if os.path.exists(os.path.join(cache_dir, MANIFEST)):
        man = read_json(os.path.join(cache_dir, MANIFEST))
        if is_current({key: man.get(key) for key in want}, want):
            return load_logits(cache_dir, splits.train, splits.fingerprint, thash)
    if teacher is None:
        from tfigkd.models import load_model_file

        teacher = load_model_file(teacher_path, "teacher")
    n, c = len(splits.train), splits.num_classes
    log.info("Teacher-logit cache %s: %d examples x %s = %.2f MB (full: %.2f MB).", cache_dir, n,
             f"top-{k} of {c} classes" if k else f"{c} classes", cache_bytes(n, c, k) / 1e6,
             cache_bytes(n, c) / 1e6)
    logits = compute_logits(teacher, splits.train, input_norm, splits.mean, splits.std,
                            strategy=strategy)
    meta = None
    if k:
        logits = pack_top_k(logits, k, temperature)
        meta = {"k": k, "temperature": temperature, "num_classes": c}
    write_logits(cache_dir, splits.train, logits, splits.fingerprint, thash, input_norm, meta)
    return logits  # computed in splits.train's order: no need to read the file back


def student_logit_cache(cfg, cache_dir, teacher_path, splits, teacher=None, top_k=None):
    """The cached teacher logits the config's students train with (``cached_teacher_logits``
    with the config's teacher normalisation, ``student.logit_top_k`` and temperature).

    ``top_k=0``: all logits whatever the config says (tuning packs per trial).

    The one call ``tfigkd run`` and ``tfigkd ablate`` share, so a top-k cache
    and the Distiller that reads it always agree.
    """
    from tfigkd.distribute import inference_strategy

    return cached_teacher_logits(cache_dir, teacher_path, splits, cfg.teacher.train.input_norm,
                                 teacher=teacher,
                                 top_k=cfg.student.logit_top_k if top_k is None else top_k,
                                 temperature=cfg.student.temperature,
                                 strategy=inference_strategy(cfg.teacher.train))

