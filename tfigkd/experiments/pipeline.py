"""``tfigkd run``: teacher -> IG maps -> students in each mode -> int8 TFLite -> report.

Every stage writes its result atomically and is skipped when its result is
already there (and matches the data), so re-running the same command after
a kill continues where it stopped.
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np

import tfigkd
from tfigkd.attribution.precompute import load_ig_maps, precompute_ig
from tfigkd.config import config_to_dict
from tfigkd.data import load_splits, normalize
from tfigkd.distill.logit_cache import cached_teacher_logits
from tfigkd.experiments.student import mode_weights, train_student
from tfigkd.experiments.teacher import train_teacher
from tfigkd.io import read_json, write_json
from tfigkd.layout import EXPORT_DIR, LOGITS_DIR


def export_int8(cfg, out_dir, splits, best):
    """Converts the best student to int8 TFLite and measures it in LiteRT."""
    from tfigkd.export import convert, save_tflite, tflite_predict

    path = os.path.join(out_dir, EXPORT_DIR, f"{os.path.basename(os.path.dirname(best['keras_path']))}_int8.tflite")
    info_path = path + ".json"
    if os.path.exists(info_path) and os.path.exists(path):
        return read_json(info_path)
    norm = cfg.student.train.input_norm
    model = keras.models.load_model(best["keras_path"])
    rng = np.random.default_rng(0)
    pos = rng.permutation(len(splits.train))[:cfg.export.calibration_images]
    rep = normalize(splits.train.x[pos], norm, splits.mean, splits.std).numpy()
    data = convert(model, "int8", rep)
    save_tflite(data, path)
    x_test = normalize(splits.test.x, norm, splits.mean, splits.std).numpy()
    lite = tflite_predict(path, x_test, batch_size=256).argmax(1)
    ref = model.predict(x_test, batch_size=256, verbose=0).argmax(1)
    info = {"path": os.path.abspath(path), "bytes": len(data),
            "test_accuracy": float((lite == splits.test.y).mean()),
            "keras_test_accuracy": float((ref == splits.test.y).mean()),
            "agreement_with_keras": float((lite == ref).mean()), "source": best["name"]}
    write_json(info_path, info)
    return info


def run_pipeline(cfg, out_dir, verbose=1):
    """Runs every stage of an experiment config into ``out_dir``.

    Returns:
        The summary dict written to ``out_dir/summary.json``.
    """
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    splits = load_splits(cfg.data)
    if verbose:
        print(f"Data: {splits.name} {splits.sizes()} fingerprint {splits.fingerprint[:12]}")
    t_metrics = train_teacher(cfg, out_dir, splits=splits, verbose=verbose)
    teacher = keras.models.load_model(t_metrics["model_path"])
    modes = list(cfg.student.modes)
    need_ig = any(mode_weights(m, cfg.student)[1] > 0 for m in modes)
    manifest, maps, ig_seconds = None, None, None
    if need_ig:
        t_ig = time.time()
        manifest = precompute_ig(cfg, out_dir, splits=splits, progress=bool(verbose))
        ig_seconds = time.time() - t_ig
        maps = load_ig_maps(cfg, out_dir, splits)
    cached = None
    if cfg.student.teacher_mode == "cached" and any(mode_weights(m, cfg.student)[0] > 0
                                                    for m in modes):
        cached = cached_teacher_logits(os.path.join(out_dir, LOGITS_DIR), t_metrics["model_path"],
                                       splits, cfg.teacher.train.input_norm, teacher=teacher)
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
    if verbose:
        print(f"Wrote {os.path.join(out_dir, 'summary.json')} and report.md")
    return summary
