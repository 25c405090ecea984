"""``tfigkd run``: teacher -> IG maps -> students in each mode -> int8 TFLite -> report.

Every stage writes its result atomically and is skipped when its result is
already there (and matches the data), so re-running the same command after
a kill continues where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np

import tfigkd
from tfigkd.config import config_to_dict
from tfigkd.data import load_splits
from tfigkd.data.lazy import is_lazy
from tfigkd.experiments.check import check_buildable
from tfigkd.experiments.plan import Unit, prepare_plan
from tfigkd.experiments.student import train_student
from tfigkd.io import file_sha256, read_json, write_json
from tfigkd.layout import EXPORT_DIR, IG_DIR, REPORT_HTML, REPORT_MD, SUMMARY_JSON
from tfigkd.lock import folder_lock

log = logging.getLogger(__name__)


def _export(cfg, out_dir, splits, keras_path, target, quant, stem):
    """One checked export into ``out_dir/export``, reused when its source is unchanged."""
    from tfigkd.export.exporter import export_model
    from tfigkd.export.targets import load_profile

    folder = os.path.join(out_dir, EXPORT_DIR)
    # A profile .yaml names its target inside; the files carry that name.
    name = target if target in ("phone", "coral", "mcu") else load_profile(target).target
    meta_path = os.path.join(folder, f"{stem}_{name}_{quant}.json")
    if os.path.exists(meta_path):
        meta = read_json(meta_path)
        # Phone files from before they were app-ready (MediaPipe metadata) are redone.
        if (meta.get("source_sha256") == file_sha256(keras_path)
                and (target != "phone" or meta.get("app_ready"))):
            return meta
    return export_model(keras_path, target, splits, quant=quant, out_dir=folder, cfg=cfg,
                        calibration_images=cfg.export.calibration_images, name=stem,
                        verbose=False)


def export_int8(cfg, out_dir, splits, best):
    """Exports the best student to int8 TFLite (phone profile) and checks it in LiteRT."""
    stem = os.path.basename(os.path.dirname(best["keras_path"]))
    return _int8_summary(_export(cfg, out_dir, splits, best["keras_path"], "phone", "int8", stem),
                         best)


def deploy(cfg, out_dir, splits, best, teacher_path):
    """int8 exports of the best student for every ``export.targets`` (+ latency vs the teacher).

    Returns:
        ``{"targets": {target: checks}, "latency": rows or None}``; each target's
        checks come from the real interpreters (LiteRT; TFLite Micro for mcu).
    """
    stem = os.path.basename(os.path.dirname(best["keras_path"]))
    out = {"targets": {}, "latency": None}
    metas = {}
    for target in cfg.export.targets:
        meta = _export(cfg, out_dir, splits, best["keras_path"], target, "int8", stem)
        metas[target] = meta
        row = {"path": meta["path"], "bytes": meta["bytes"],
               "litert_accuracy": meta["checks"]["litert"]["accuracy"],
               "agreement_with_keras": meta["checks"]["litert"]["agreement_with_keras"]}
        if "tflm" in meta["checks"]:
            t = meta["checks"]["tflm"]
            row.update(tflm_accuracy=t["accuracy"], tflm_images=t["images"],
                       arena_bytes=t["arena_bytes"], c_source=t["c_source"])
        if target == "phone":
            row["mediapipe_loads"] = (meta["checks"].get("mediapipe") or {}).get("loads")
        out["targets"][target] = row
    if cfg.export.latency:
        out["latency"] = _latency(cfg, out_dir, splits, best, teacher_path, metas, stem)
    return out


def _latency(cfg, out_dir, splits, best, teacher_path, metas, stem):
    """LiteRT latency (batch 1, 1 thread) of teacher fp32/int8 and student int8, interleaved."""
    from tfigkd.bench.latency import benchmark_tflite

    files = []
    for quant in ("fp32", "int8"):
        m = _export(cfg, out_dir, splits, teacher_path, "phone", quant, "teacher")
        files.append({"name": f"teacher_{quant}", "role": "teacher", "quant": quant,
                      "path": m["path"]})
    student_meta = metas.get("phone") or _export(cfg, out_dir, splits, best["keras_path"],
                                                 "phone", "int8", stem)
    files.append({"name": "student_int8", "role": "student", "quant": "int8",
                  "path": student_meta["path"]})
    rows = benchmark_tflite(files, batches=(1,), threads=(1,), runs=cfg.export.latency_runs,
                            warmup=max(10, cfg.export.latency_runs // 10), progress=False)
    by = {r["name"]: r for r in rows}
    keep = ("name", "quant", "bytes", "median_ms", "p90_ms", "iqr_ms", "runs")
    return {"rows": [{k: r[k] for k in keep} for r in rows],
            "speedup_vs_teacher_fp32": by["teacher_fp32"]["median_ms"] / by["student_int8"]["median_ms"],
            "speedup_vs_teacher_int8": by["teacher_int8"]["median_ms"] / by["student_int8"]["median_ms"],
            "setting": "LiteRT, phone files (pixels in, probabilities out), batch 1, 1 thread, "
                       "median of the timed invokes after warm-up"}


def teacher_warnings(t_metrics, students, num_classes, test_images):
    """Warnings about the teacher that hold whatever the number of seeds.

    A teacher at chance (an adopted model fed the wrong normalisation or
    size, or one trained briefly from scratch whose BatchNorm moving averages
    never caught up) makes every KD and IG mode meaningless, so it is said
    loudly rather than left for the reader to notice in a table. "At chance"
    means a one-sided binomial test cannot tell its test accuracy from
    1/classes at the 1 % level (``scipy.stats.binomtest``).
    """
    from scipy.stats import binomtest

    acc = t_metrics["test_accuracy"]
    chance = 1.0 / max(1, num_classes)
    out = []
    correct = int(round(acc * test_images))
    if test_images and binomtest(correct, test_images, chance,
                                 alternative="greater").pvalue > 0.01:
        out.append(
            f"The teacher's test accuracy ({acc:.4f}) is at chance level (1/{num_classes} = "
            f"{chance:.4f}): KD and IG from it carry no information. Check teacher.train."
            "input_norm and teacher.input_size against how it was trained; a model trained "
            "briefly from scratch with plain Keras fit may need its BatchNorm statistics "
            "recomputed (tfigkd.models.batchnorm.recompute_batchnorm_statistics).")
    plain = [s["test_accuracy"] for s in students if s["mode"] == "student"]
    if plain and acc <= float(np.mean(plain)):
        out.append(f"The teacher ({acc:.4f}) is not better than the plain student "
                   f"({float(np.mean(plain)):.4f} mean over seeds): KD cannot help here.")
    return out


IG_ERROR_WARN = 0.05  # median relative completeness error above which the maps are suspect


def ig_warnings(completeness, ig_cfg):
    """A warning when the stored IG maps are far from converged.

    IG's completeness (attributions summing to F(x) - F(baseline)) measures how
    well the path integral was approximated. A jagged teacher (e.g. a
    MobileNetV2 trained briefly) can need hundreds of steps where a ResNet-8
    needs 16; its maps at too few steps are noise, and so is any IG overlay.
    """
    if not completeness or completeness.get("median_rel_error") is None:
        return []
    med = completeness["median_rel_error"]
    if med <= IG_ERROR_WARN:
        return []
    return [f"The IG maps are far from converged: median completeness error {med:.1%} (p90 "
            f"{completeness.get('p90_rel_error', float('nan')):.1%}) at ig.n_steps = "
            f"{ig_cfg.n_steps}. Raise ig.n_steps (error roughly quarters with each 4x) or set "
            "ig.adaptive: true, then recompute the maps (precompute-ig into a new folder)."]


def mode_statistics(students):
    """Paired statistics of the modes over seeds, and the warnings a reader needs.

    Returns:
        ``{"modes": {mode: {metric: describe}}, "comparisons": [...],
        "warnings": [...]}`` (``tfigkd.ablation.report.summarize``), or None
        when no mode has two seeds.
    """
    from tfigkd.ablation.report import _clean, summarize

    seeds = {}
    for s in students:
        seeds.setdefault(s["mode"], set()).add(s["seed"])
    if max(len(v) for v in seeds.values()) < 2:
        return None
    rows = [{"mode": s["mode"], "seed": s["seed"], "subset": None,
             "val_accuracy": s["val_accuracy"], "test_accuracy": s["test_accuracy"],
             "agreement_spearman": None, "agreement_iou": None} for s in students]
    modes, comparisons = summarize(rows, resamples=2000)
    warnings = []
    for c in comparisons:
        if c["metric"] != "test_accuracy" or c["b"] != "student":
            continue
        sds = [modes[m]["test_accuracy"]["sd"] for m in (c["a"], "student")]
        spread = max((v for v in sds if not math.isnan(v)), default=0.0)
        ci = (c["ci_low"], c["ci_high"])
        if abs(c["mean_diff"]) <= spread:
            warnings.append(f"{c['a']} vs student: the mean difference ({c['mean_diff']:+.4f}) "
                            f"is inside the seed-to-seed spread (sd {spread:.4f}); with n = "
                            f"{c['n']} seeds treat it as unconfirmed.")
        elif any(math.isnan(v) for v in ci) or ci[0] <= 0 <= ci[1]:
            warnings.append(f"{c['a']} vs student: the 95 % CI of the paired difference "
                            f"({c['mean_diff']:+.4f}) includes 0: no evidence either way with "
                            f"n = {c['n']} seeds.")
    return _clean({"modes": modes, "comparisons": comparisons, "warnings": warnings})


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
    modes = list(cfg.student.modes)
    plan = prepare_plan(cfg, out_dir, splits, modes, verbose=verbose)
    t_metrics, teacher = plan.shared.teacher_metrics, plan.shared.teacher
    manifest, maps, ig_seconds = plan.shared.ig_manifest, plan.shared.maps, plan.shared.ig_seconds
    students = [train_student(plan, Unit(mode, seed)) for mode in modes
                for seed in cfg.student.seeds]
    best = max(students, key=lambda m: m["val_accuracy"])  # chosen on validation, never test
    export = export_int8(cfg, out_dir, splits, best) if cfg.export.int8 else None
    deployed = (deploy(cfg, out_dir, splits, best, t_metrics["model_path"])
                if cfg.export.int8 and (cfg.export.latency or cfg.export.targets != ["phone"])
                else None)
    statistics = mode_statistics(students)
    warnings = teacher_warnings(t_metrics, students, splits.num_classes, len(splits.test))
    warnings += ig_warnings(manifest["completeness"] if manifest else None, cfg.ig)
    warnings += [w for w in (statistics["warnings"] if statistics else []) if w not in warnings]
    for w in warnings:
        log.warning("%s", w)
    from tfigkd.evaluation.report import compact, evaluate_run

    evaluation = evaluate_run(cfg, out_dir, splits, teacher, best["keras_path"],
                              t_metrics["model_path"])
    summary = {
        "tfigkd_version": tfigkd.__version__,
        "config_name": cfg.name,
        "dataset": splits.name, "sizes": splits.sizes(), "fingerprint": splits.fingerprint,
        # Images read from the disk cache per batch (data.memory_budget_mb exceeded).
        "streamed": is_lazy(splits.train.x),
        "teacher": {k: t_metrics[k] for k in ("model", "trainable_params", "macs", "val_accuracy",
                                               "test_accuracy", "train_seconds", "model_path")},
        "ig": {"settings": config_to_dict(cfg.ig), "store": os.path.join(out_dir, IG_DIR),
               "completeness": manifest["completeness"] if manifest else None,
               "seconds_this_run": ig_seconds},
        "models": [{k: s[k] for k in ("name", "mode", "seed", "trainable_params", "macs",
                                      "val_accuracy", "test_accuracy", "train_seconds",
                                      "keras_path", "alpha", "p", "gamma")} for s in students],
        "best_student": best["name"],
        "int8": export,
        "deploy": deployed,
        "statistics": statistics,
        "warnings": warnings,
        "evaluation": compact(evaluation),
        "wall_seconds_this_run": time.time() - t0,
        "config": config_to_dict(cfg),
    }
    write_json(os.path.join(out_dir, SUMMARY_JSON), summary)
    from tfigkd.evaluation import evaluation_lines, write_html
    from tfigkd.experiments.report import write_report

    write_report(out_dir, summary, splits, maps, students, t_metrics, cfg,
                 extra=evaluation_lines(evaluation, summary, best, out_dir))
    write_html(out_dir, f"{cfg.name}: results")
    log.info("Wrote %s, %s and %s", os.path.join(out_dir, SUMMARY_JSON), REPORT_MD, REPORT_HTML)
    return summary
