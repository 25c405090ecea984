"""``tfigkd run``: teacher -> IG maps -> students in each mode -> int8 TFLite -> report.

Every stage writes its result atomically and is skipped when its result is
already there (and matches the data), so re-running the same command after
a kill continues where it stopped.
"""

from __future__ import annotations

import logging
import os
import time


import tfigkd
from tfigkd.attribution.precompute import (load_ig_maps, precompute_ig, prepare_overlay_maps,
                                           stored_sources)
from tfigkd.config import config_to_dict
from tfigkd.data import load_splits
from tfigkd.distill.logit_cache import cached_teacher_logits
from tfigkd.experiments.check import check_buildable
from tfigkd.experiments.student import mode_weights, train_student
from tfigkd.experiments.teacher import train_teacher
from tfigkd.io import file_sha256, read_json, write_json
from tfigkd.layout import EXPORT_DIR, LOGITS_DIR
from tfigkd.lock import folder_lock
from tfigkd.models import load_model_file

log = logging.getLogger(__name__)


def export_int8(cfg, out_dir, splits, best):
    """Exports the best student to int8 TFLite (phone profile) and checks it in LiteRT."""
    from tfigkd.export.exporter import export_model

    stem = os.path.basename(os.path.dirname(best["keras_path"]))
    folder = os.path.join(out_dir, EXPORT_DIR)
    meta_path = os.path.join(folder, f"{stem}_phone_int8.json")
    if os.path.exists(meta_path):
        meta = read_json(meta_path)
        # Files from before phone exports were app-ready (MediaPipe metadata) are redone.
        if (meta.get("source_sha256") == file_sha256(best["keras_path"])
                and meta.get("app_ready")):
            return _int8_summary(meta, best)
    meta = export_model(best["keras_path"], "phone", splits, quant="int8", out_dir=folder,
                        cfg=cfg, calibration_images=cfg.export.calibration_images, name=stem,
                        verbose=False)
    return _int8_summary(meta, best)


def _int8_summary(meta, best):
    lite = meta["checks"]["litert"]
    return {"path": meta["path"], "bytes": meta["bytes"], "test_accuracy": lite["accuracy"],
            "keras_test_accuracy": lite["keras_accuracy"], "accuracy_drop": lite["accuracy_drop"],
            "agreement_with_keras": lite["agreement_with_keras"], "source": best["name"],
            "mediapipe": meta["checks"].get("mediapipe"),
            "metadata": meta["path"][:-len(".tflite")] + ".json"}


def run_pipeline(cfg, out_dir, verbose=1):
    """Runs every stage of an experiment config into ``out_dir``.

    Returns:
        The summary dict written to ``out_dir/summary.json``.
    """
    with folder_lock(out_dir):
        return _run_pipeline(cfg, out_dir, verbose)


def _run_pipeline(cfg, out_dir, verbose):
    t0 = time.time()
    splits = load_splits(cfg.data)
    log.info("Data: %s %s fingerprint %s", splits.name, splits.sizes(), splits.fingerprint[:12])
    # Every model the run will build, built once now: a bad model setting
    # fails in seconds instead of after the teacher has trained.
    check_buildable(cfg, splits)
    t_metrics = train_teacher(cfg, out_dir, splits=splits, verbose=verbose)
    teacher = load_model_file(t_metrics["model_path"], "teacher")
    modes = list(cfg.student.modes)
    need_ig = any(mode_weights(m, cfg.student)[1] > 0 for m in modes)
    manifest, maps, ig_seconds = None, None, None
    if need_ig:
        t_ig = time.time()
        manifest = precompute_ig(cfg, out_dir, splits=splits, progress=bool(verbose))
        ig_seconds = time.time() - t_ig
        maps = load_ig_maps(cfg, out_dir, splits)
        if stored_sources(modes) != ["ig"]:  # other stored overlay sources (kd_gradcam, ...)
            maps = {"ig": maps, **prepare_overlay_maps(cfg, out_dir, splits, modes, bool(verbose))}
    cached = None
    if cfg.student.teacher_mode == "cached" and any(mode_weights(m, cfg.student)[0] > 0
                                                    for m in modes):
        cached = cached_teacher_logits(os.path.join(out_dir, LOGITS_DIR), t_metrics["model_path"],
                                       splits, cfg.teacher.train.input_norm, teacher=teacher,
                                       top_k=cfg.student.logit_top_k,
                                       temperature=cfg.student.temperature)
    students = []
    for mode in modes:
        for seed in cfg.student.seeds:
            students.append(train_student(cfg, out_dir, splits, mode, seed, teacher=teacher,
                                          maps=maps, cached=cached, verbose=verbose))
    best = max(students, key=lambda m: m["val_accuracy"])  # chosen on validation, never test
    export = export_int8(cfg, out_dir, splits, best) if cfg.export.int8 else None
    summary = {
        "tfigkd_version": tfigkd.__version__,
        "config_name": cfg.name,
        "dataset": splits.name, "sizes": splits.sizes(), "fingerprint": splits.fingerprint,
        "teacher": {k: t_metrics[k] for k in ("model", "trainable_params", "macs", "val_accuracy",
                                               "test_accuracy", "train_seconds", "model_path")},
        "ig": {"settings": config_to_dict(cfg.ig), "store": os.path.join(out_dir, "ig"),
               "completeness": manifest["completeness"] if manifest else None,
               "seconds_this_run": ig_seconds},
        "models": [{k: s[k] for k in ("name", "mode", "seed", "trainable_params", "macs",
                                      "val_accuracy", "test_accuracy", "train_seconds",
                                      "keras_path", "alpha", "p", "gamma")} for s in students],
        "best_student": best["name"],
        "int8": export,
        "wall_seconds_this_run": time.time() - t0,
        "config": config_to_dict(cfg),
    }
    write_json(os.path.join(out_dir, "summary.json"), summary)
    from tfigkd.experiments.report import write_report

    write_report(out_dir, summary, splits, maps, students, t_metrics, cfg)
    log.info("Wrote %s and report.md", os.path.join(out_dir, "summary.json"))
    return summary
