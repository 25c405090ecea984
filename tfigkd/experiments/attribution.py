"""``tfigkd precompute-ig``: the teacher's IG maps (or another source's) for a run folder.

The stage runner over ``tfigkd.attribution``: it locks the run folder (or a
worker's part of the store), checks the teacher against the data, fills
the store with ``write_store`` and joins the maps to the training split.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict

from tfigkd.attribution.store import (MANIFEST, finalize_store, load_maps, missing_shards,
                                      stored_settings, verify_store, write_store)
from tfigkd.data import load_splits
from tfigkd.errors import UserError
from tfigkd.freshness import is_current
from tfigkd.distribute import inference_strategy
from tfigkd.io import file_sha256, read_json
from tfigkd.layout import JOINED_MAPS_DIR, teacher_path
from tfigkd.lock import folder_lock
from tfigkd.models import check_fits_data, load_model_file

log = logging.getLogger(__name__)


def precompute_ig(cfg, out_dir, splits=None, shard=(0, 1), verify_only=False, progress=True,
                  source="ig"):
    """Computes (or resumes, or verifies) the store of teacher IG maps (or another source's).

    Args:
        cfg: ``ExperimentConfig``; the teacher is ``cfg.teacher.path`` or
            ``out_dir/teacher.keras``.
        out_dir: Run folder; the store goes to ``out_dir/ig``.
        splits: Pre-loaded ``SplitData``.
        shard: ``(i, N)``: compute only this worker's shards (job arrays);
            the manifest is written only when all shards are present.
        verify_only: Compute nothing: re-read every shard, check it against its
            checksum, the current data, teacher and IG settings, and (re)write
            the manifest (``verify_store``).
        progress: Show a progress bar.
        source: Which maps (``tfigkd.attribution.sources.STORED_SOURCES``):
            ``ig`` goes to ``out_dir/ig``, the others to
            ``out_dir/attributions/<source>``, each with its own settings.

    Returns:
        The manifest dict, or None when other workers' shards are still missing.
    """
    from tfigkd.attribution.sources import make_source_compute_fn, source_settings, store_dir

    settings = source_settings(cfg, source)  # checks the name before any work
    splits = splits or load_splits(cfg.data)
    store = store_dir(out_dir, source)
    # A whole-store job locks the run folder; --shard i/N workers lock only
    # their own part, so several can share one store.
    lock = (folder_lock(out_dir) if shard[1] == 1 or verify_only else
            folder_lock(store, f".tfigkd-ig-worker-{shard[0]}-of-{shard[1]}.lock"))
    with lock:
        tpath = teacher_path(cfg, out_dir)
        if not os.path.exists(tpath):
            raise UserError(f"Teacher {tpath} not found; run `tfigkd train-teacher` with the "
                            "same --out first, or set teacher.path.")
        thash = file_sha256(tpath)
        keys = dict(fingerprint=splits.fingerprint, teacher_hash=thash, settings=settings)
        if verify_only:
            return verify_store(store, splits.train, shard_size=cfg.ig.shard_size, **keys)
        mpath = os.path.join(store, MANIFEST)
        if os.path.exists(mpath):
            man = read_json(mpath)
            if is_current({"fingerprint": man["fingerprint"], "teacher_sha256": man["teacher_sha256"],
                           "settings": stored_settings(man["settings"])},
                          {"fingerprint": splits.fingerprint, "teacher_sha256": thash,
                           "settings": asdict(settings)}):
                return man  # readers check every shard's checksum when they load
        teacher = load_model_file(tpath, "teacher")
        check_fits_data(teacher, splits, f"Teacher {tpath}", cfg.teacher.input_size)
        t0 = time.time()
        n = write_store(
            store, splits.train,
            make_source_compute_fn(source, teacher, cfg, cfg.teacher.train.input_norm,
                                   splits.mean, splits.std, settings,
                                   inference_strategy(cfg.teacher.train)),
            shard_size=cfg.ig.shard_size, batch_size=cfg.ig.batch_size, worker=shard,
            progress=progress, **keys)
        if n:
            log.info("Computed %d %s shard(s) in %.1f s.", n, source, time.time() - t0)
        if shard[1] > 1 and missing_shards(store):
            return None  # other workers still running: merge with --verify later
        return finalize_store(store)


def load_ig_maps(cfg, out_dir, splits, source="ig"):
    """The stored maps of ``source`` for ``splits.train``, checked against data, teacher, settings."""
    from tfigkd.attribution.sources import source_settings, store_dir
    from tfigkd.data.lazy import is_lazy

    store = store_dir(out_dir, source)
    # Streamed images (larger than memory) get streamed maps: joined once
    # into a file under the run folder and read a batch at a time.
    join_dir = os.path.join(out_dir, JOINED_MAPS_DIR) if is_lazy(splits.train.x) else None
    return load_maps(store, splits.train,
                     fingerprint=splits.fingerprint,
                     teacher_hash=file_sha256(teacher_path(cfg, out_dir)),
                     settings=source_settings(cfg, source), join_dir=join_dir)


def stored_sources(modes):
    """The stored map sources ``modes`` overlay (derived controls need ``ig``), sorted."""
    from tfigkd.modes import parse_mode

    return sorted({parse_mode(m).stored_source for m in modes} - {None})


def prepare_overlay_maps(cfg, out_dir, splits, modes, progress=True):
    """Computes (or reuses) the store of every source ``modes`` overlay and loads them.

    Returns:
        (``{source: maps}`` aligned with ``splits.train`` or None when no mode
        has an overlay, the IG store's manifest or None).
    """
    out, manifest = {}, None
    for source in stored_sources(modes):
        man = precompute_ig(cfg, out_dir, splits=splits, progress=progress, source=source)
        manifest = man if source == "ig" else manifest
        out[source] = load_ig_maps(cfg, out_dir, splits, source=source)
    return out or None, manifest
