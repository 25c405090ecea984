"""``tfigkd precompute-ig``: the teacher's IG maps (or another source's) for the training split."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict

import numpy as np

from tfigkd.attribution.integrated_gradients import IntegratedGradients, ig_map
from tfigkd.attribution.store import (MANIFEST, IGSettings, finalize_store, load_maps,
                                      missing_shards, stored_settings, verify_store,
                                      write_store)
from tfigkd.data import load_splits, normalize
from tfigkd.errors import UserError
from tfigkd.io import file_sha256, read_json
from tfigkd.layout import IG_DIR, JOINED_MAPS_DIR, teacher_path
from tfigkd.lock import folder_lock
from tfigkd.models import check_fits_data, load_model_file

log = logging.getLogger(__name__)

STORE_DIR = IG_DIR


def ig_settings(ig_cfg):
    """The ``IGSettings`` recorded in (and checked against) a store."""
    return IGSettings(n_steps=ig_cfg.n_steps, method=ig_cfg.method, baseline=ig_cfg.baseline,
                      output=ig_cfg.output, reduce=ig_cfg.reduce,
                      internal_batch_size=ig_cfg.internal_batch_size,
                      adaptive=ig_cfg.adaptive, start_steps=ig_cfg.start_steps,
                      rtol=ig_cfg.rtol, atol=ig_cfg.atol)


def make_compute_fn(teacher, ig_cfg, input_norm, mean, std):
    """``fn(x_uint8, labels) -> (maps, delta, rel_error)`` for ``write_store``.

    A teacher at another resolution than the data gets the images resized to
    its own; its maps are resized back to the data's (``teacher_io``).
    """
    from tfigkd.models.teacher_io import affine, resize_images, resize_maps, teacher_size

    ig = IntegratedGradients(teacher, ig_cfg.output)
    norm = None if input_norm == "unit" else affine(input_norm, mean, std,
                                                     teacher.input_shape[-1])
    size = teacher_size(teacher)

    def compute(x_uint8, labels):
        data_size = tuple(x_uint8.shape[1:3])
        x = normalize(resize_images(x_uint8, size), input_norm, mean, std).numpy()
        if ig_cfg.adaptive:
            attr, delta, _ = ig.attribute_adaptive(
                x, labels, baseline=ig_cfg.baseline, rtol=ig_cfg.rtol, atol=ig_cfg.atol,
                start_steps=min(ig_cfg.start_steps, ig_cfg.n_steps), max_steps=ig_cfg.n_steps,
                method=ig_cfg.method, internal_batch_size=ig_cfg.internal_batch_size, norm=norm)
        else:
            attr, delta = ig.attribute(x, labels, baseline=ig_cfg.baseline,
                                       n_steps=ig_cfg.n_steps, method=ig_cfg.method,
                                       return_delta=True, norm=norm,
                                       internal_batch_size=ig_cfg.internal_batch_size)
        # F(x) - F(x') = sum(IG) + delta, the scale the error is relative to.
        span = np.abs(attr.reshape(len(x), -1).sum(1) + delta)
        rel = np.abs(delta) / np.maximum(span, 1e-6)
        return resize_maps(ig_map(attr, ig_cfg.reduce), data_size), delta, rel

    return compute


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
            if (man["fingerprint"], man["teacher_sha256"], stored_settings(man["settings"])) == \
                    (splits.fingerprint, thash, asdict(settings)):
                return man  # readers check every shard's checksum when they load
        teacher = load_model_file(tpath, "teacher")
        check_fits_data(teacher, splits, f"Teacher {tpath}", cfg.teacher.input_size)
        t0 = time.time()
        n = write_store(
            store, splits.train,
            make_source_compute_fn(source, teacher, cfg, cfg.teacher.train.input_norm,
                                   splits.mean, splits.std, settings),
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
    from tfigkd.attribution.store import joined_maps_path
    from tfigkd.data.lazy import is_lazy

    store = store_dir(out_dir, source)
    # Streamed images (larger than memory) get streamed maps: joined once
    # into a file under the run folder and read a batch at a time.
    to_file = (joined_maps_path(store, splits.train, os.path.join(out_dir, JOINED_MAPS_DIR))
               if is_lazy(splits.train.x) else None)
    return load_maps(store, splits.train,
                     fingerprint=splits.fingerprint,
                     teacher_hash=file_sha256(teacher_path(cfg, out_dir)),
                     settings=source_settings(cfg, source), to_file=to_file)


def stored_sources(modes):
    """The stored map sources ``modes`` overlay (derived controls need ``ig``), sorted."""
    from tfigkd.augment.controls import DERIVED
    from tfigkd.experiments.student import overlay_source

    found = {overlay_source(m) for m in modes} - {None}
    return sorted({"ig" if s in DERIVED else s for s in found})


def prepare_overlay_maps(cfg, out_dir, splits, modes, progress=True):
    """Computes (or reuses) the store of every source ``modes`` overlay and loads them.

    Returns:
        ``{source: maps}`` aligned with ``splits.train``, or None when no mode
        has an overlay.
    """
    sources = stored_sources(modes)
    out = {}
    for source in sources:
        precompute_ig(cfg, out_dir, splits=splits, progress=progress, source=source)
        out[source] = load_ig_maps(cfg, out_dir, splits, source=source)
    return out or None
