"""``tfigkd ablate``: every (mode, seed[, Monte Carlo subset]) as one resumable unit, then statistics.

One teacher, one IG store and one logit cache serve every unit. A unit is a
student run (``train_student``) and, after it, the agreement of its IG maps
with the teacher's on validation images. Units are independent, so
``shard=(i, N)`` lets N processes or machines split them; the report is
built from whatever units have finished and lists those still missing.

Pairing: every mode of a seed gets the same student initialisation, data
order and augmentation (both are functions of the seed), and every mode of a
Monte Carlo subset trains on the same subset, so modes are compared on
paired differences.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from tfigkd.data import load_splits
from tfigkd.data.split import stratified_subset
from tfigkd.errors import UserError
from tfigkd.io import file_sha256, read_json, write_json
from tfigkd.layout import (AGREEMENT_DIR, AGREEMENT_FILE, METRICS_FILE, MODEL_FILE,
                           SUBSETS_DIR, TEACHER_VAL_MAPS, student_dir)
from tfigkd.lock import folder_lock

log = logging.getLogger(__name__)



def ablation_units(modes, seeds, subsets=0):
    """All units, in a fixed order: ``[{"mode", "seed", "subset"}, ...]``."""
    return [{"mode": m, "seed": int(s), "subset": k}
            for k in (range(subsets) if subsets else [None]) for s in seeds for m in modes]


def shard_units(units, shard):
    """The units worker ``i`` of ``N`` runs: every N-th, so shards are balanced across modes."""
    i, n = shard
    return units[i::n]


def unit_dir(out_dir, unit):
    """The run folder of a unit's subset (the whole split: ``out_dir`` itself)."""
    if unit["subset"] is None:
        return out_dir
    return os.path.join(out_dir, SUBSETS_DIR, f"mc{unit['subset']:03d}")


def subset_rows(splits, subset, fraction):
    """Positions in ``splits.train`` of Monte Carlo subset ``subset`` (stratified, seeded by it)."""
    size = max(1, int(round(fraction * len(splits.train))))
    return stratified_subset(splits.train.y, size, 7919 + int(subset))


def ablate(cfg, out_dir, seeds=None, modes=None, subsets=None, subset_fraction=None, shard=(0, 1),
           report_only=False, verbose=0, shared_dir=None):
    """Runs this worker's units of an ablation and writes the report.

    Args:
        cfg: ``ExperimentConfig``.
        out_dir: Ablation folder (teacher, IG store, logit cache, units, report).
        seeds: Seeds (default ``cfg.student.seeds``).
        modes: Modes (default ``cfg.student.modes``).
        subsets: Monte Carlo subsets (default ``cfg.ablation.subsets``; 0 = none).
        subset_fraction: Fraction of the training split per subset.
        shard: ``(i, N)``: run only every N-th unit starting at ``i``.
        report_only: Train nothing; build the report from finished units.
        verbose: Keras verbosity of the student runs.
        shared_dir: Folder of the teacher, overlay map stores and logit cache
            (default ``out_dir``); ``tfigkd sweep`` shares one between students.

    Returns:
        The report dict written to ``out_dir/ablation.json``.
    """
    from tfigkd.modes import parse_mode

    seeds = list(cfg.student.seeds if seeds is None else seeds)
    modes = list(cfg.student.modes if modes is None else modes)
    for m in modes:
        try:
            parse_mode(m)
        except UserError as e:
            raise UserError(f"--modes: {e}") from None
    if not seeds or not modes:
        raise UserError("An ablation needs at least one seed and one mode.")
    subsets = cfg.ablation.subsets if subsets is None else subsets
    fraction = cfg.ablation.subset_fraction if subset_fraction is None else subset_fraction
    units = ablation_units(modes, seeds, subsets)
    splits = load_splits(cfg.data)
    if not report_only:
        _run_units(cfg, out_dir, splits, shard_units(units, shard), fraction, verbose,
                   shared_dir or out_dir)
    from tfigkd.ablation.report import write_report

    with folder_lock(out_dir, wait=True):
        return write_report(out_dir, collect_runs(out_dir, units), units, cfg)


def _run_units(cfg, out_dir, splits, todo, fraction, verbose, shared):
    from tfigkd.experiments.plan import Unit, prepare_plan
    from tfigkd.experiments.student import train_student

    # The first worker prepares the shared stages; the others wait for it and reuse them.
    with folder_lock(shared, wait=True):
        plan = prepare_plan(cfg, shared, splits, sorted({u["mode"] for u in todo}),
                            verbose=verbose)
        tpath = plan.shared.teacher_file
        reference = (_teacher_val_maps(cfg, shared, splits, plan.shared.teacher, tpath)
                     if cfg.ablation.agreement_images else None)
    # Units train in their own folders with the shared teacher named explicitly.
    plan.cfg = dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, path=tpath))
    for n, u in enumerate(todo, 1):
        unit = Unit(u["mode"], u["seed"], folder=unit_dir(out_dir, u),
                    rows=None if u["subset"] is None else subset_rows(splits, u["subset"],
                                                                      fraction))
        m = train_student(plan, unit)
        if reference is not None:
            _agreement(plan.cfg, plan.unit_dir(unit), m, reference)
        log.info("[%d/%d] %s seed %d%s: val %.4f test %.4f", n, len(todo), u["mode"],
                 u["seed"], "" if u["subset"] is None else f" subset {u['subset']}",
                 m["val_accuracy"], m["test_accuracy"])


def _agreement_images(cfg, splits):
    order = np.argsort(splits.val.index, kind="stable")
    return splits.val.take(order[:min(cfg.ablation.agreement_images, len(order))])


def _ig_maps(model, ig_cfg, input_norm, splits, images):
    """IG maps (true class) of ``images`` under ``model``, batched as the IG store does."""
    from tfigkd.attribution.precompute import make_compute_fn
    from tfigkd.attribution.settings import ig_settings

    fn = make_compute_fn(model, ig_settings(ig_cfg), input_norm, *((splits.mean, splits.std) if splits
                                                      else (None, None)))
    step = ig_cfg.batch_size
    return np.concatenate([fn(images.x[i:i + step], images.y[i:i + step])[0]
                           for i in range(0, len(images), step)])


def _teacher_val_maps(cfg, out_dir, splits, teacher, tpath):
    """The teacher's IG maps of the agreement images (computed once, kept with their keys)."""
    images = _agreement_images(cfg, splits)
    keys = {"teacher_sha256": file_sha256(tpath), "indices": images.index.tolist(),
            "ig": dataclasses.asdict(cfg.ig)}
    path = os.path.join(out_dir, AGREEMENT_DIR, TEACHER_VAL_MAPS)
    meta_path = path[:-4] + ".json"
    if os.path.exists(path) and os.path.exists(meta_path) and read_json(meta_path) == keys:
        with np.load(path) as z:
            return {"maps": z["maps"], "images": images, "keys": keys}
    maps = _ig_maps(teacher, cfg.ig, cfg.teacher.train.input_norm, splits, images)
    from tfigkd.io import atomic_path

    with atomic_path(path) as tmp:
        np.savez(tmp, maps=maps)
    write_json(meta_path, keys)
    return {"maps": maps, "images": images, "keys": keys}


def _agreement(cfg, run_dir, metrics, reference):
    """IG agreement of a finished student with the teacher; reused when already computed."""
    from tfigkd.ablation.agreement import spearman, topk_iou
    from tfigkd.models import load_model_file

    path = os.path.join(run_dir, AGREEMENT_FILE)
    keys = {"student_sha256": file_sha256(metrics["keras_path"]), **reference["keys"],
            "top_k": cfg.ablation.agreement_top_k}
    if os.path.exists(path) and read_json(path).get("keys") == keys:
        return read_json(path)
    student = load_model_file(metrics["keras_path"], "student")
    images = reference["images"]
    maps = _ig_maps(student, cfg.ig, cfg.student.train.input_norm, None, images)
    out = {"agreement_spearman": spearman(maps, reference["maps"]),
           "agreement_iou": topk_iou(maps, reference["maps"], cfg.ablation.agreement_top_k),
           "images": int(len(images)), "keys": keys}
    write_json(path, out)
    return out


def collect_runs(out_dir, units):
    """One row per finished unit: mode, seed, subset, accuracies and agreement (None if absent)."""
    runs = []
    for unit in units:
        run_dir = student_dir(unit_dir(out_dir, unit), unit["mode"], unit["seed"])
        mpath = os.path.join(run_dir, METRICS_FILE)
        if not os.path.exists(mpath) or not os.path.exists(os.path.join(run_dir, MODEL_FILE)):
            continue
        m = read_json(mpath)
        row = {**unit, "val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"],
               "agreement_spearman": None, "agreement_iou": None,
               "train_seconds": m.get("train_seconds")}
        apath = os.path.join(run_dir, AGREEMENT_FILE)
        if os.path.exists(apath):
            a = read_json(apath)
            row.update(agreement_spearman=a["agreement_spearman"], agreement_iou=a["agreement_iou"])
        runs.append(row)
    return runs
