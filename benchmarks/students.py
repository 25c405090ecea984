"""Compact students on real Fashion-MNIST: accuracy and LiteRT latency against the teacher.

Trains each design (presets of ``tfigkd.models.PRESETS``) as a plain
student and by KD from the adopted teacher (cached teacher logits), on the
10,000-image subset of ``configs/fashion_mnist.yaml`` (9,000 train + 1,000
validation, full 10,000-image test set). Every model, the teacher included,
is exported to fp32 and int8 (phone profile) and checked on the whole test
set in LiteRT; then all files are timed side by side in one interleaved run
(batch 1, 1 thread, warm-up, ``--runs`` invokes each). The int8 students are
also exported for the mcu profile to measure flash and the TFLite Micro arena.

Writes ``benchmarks/results/students_fashion_mnist.json`` (``teacher`` and
``rows``: one per model, mode and quantisation) and a PNG of test accuracy
against int8/fp32 latency with the Pareto front.

Usage (the teacher comes from ``tfigkd train-teacher --config
configs/fashion_mnist.yaml --out runs/fashion_mnist``)::

    .venv/bin/python benchmarks/students.py --teacher runs/fashion_mnist/teacher.keras

Re-running resumes: finished students are reused (same settings) and only
the export and the timing run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from common import write_result  # noqa: E402

from tfigkd.bench.latency import benchmark_tflite  # noqa: E402
from tfigkd.config import load_config  # noqa: E402
from tfigkd.data import load_splits  # noqa: E402
from tfigkd.distill.logit_cache import student_logit_cache  # noqa: E402
from tfigkd.bench.machine import machine_info  # noqa: E402
from tfigkd.experiments.plan import Unit, plan_of  # noqa: E402
from tfigkd.experiments.student import train_student  # noqa: E402
from tfigkd.export.exporter import export_model  # noqa: E402
from tfigkd.models import PRESETS, count_macs, load_model_file, trainable_params  # noqa: E402

log = logging.getLogger("students")
DESIGNS = ("ds_cnn_m", "ds_cnn_l", "resnet8_w05", "resnet8", "mobilenet_v2_w035_s2")


def _student_cfg(cfg, design, modes):
    name, kwargs = PRESETS[design]
    model = dataclasses.replace(cfg.student.model, name=name, kwargs=dict(kwargs))
    return dataclasses.replace(cfg, student=dataclasses.replace(
        cfg.student, model=model, modes=list(modes), teacher_mode="cached"))


def _export(path, splits, cfg, quant, target, folder, name):
    meta = export_model(path, target, splits, quant=quant, out_dir=folder, cfg=cfg, name=name,
                        verbose=False, micro_images=200)
    return meta


def pareto(points):
    """Indices of the points not dominated in (lower latency, higher accuracy)."""
    keep = []
    for i, (lat, acc) in enumerate(points):
        if not any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc)
                   for j, (l2, a2) in enumerate(points) if j != i):
            keep.append(i)
    return keep


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, quant in zip(axes, ("int8", "fp32")):
        sub = [r for r in rows if r["quant"] == quant]
        pts = [(r["latency_ms_median"], r["test_accuracy"]) for r in sub]
        front = sorted((pts[i] for i in pareto(pts)))
        for r in sub:
            marker = "*" if r["mode"] == "teacher" else ("o" if r["mode"] == "student" else "^")
            ax.scatter(r["latency_ms_median"], r["test_accuracy"], marker=marker, s=60)
            ax.annotate(f"{r['name']} {r['mode']}", (r["latency_ms_median"], r["test_accuracy"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.plot(*zip(*front), "k--", lw=1, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(f"{quant} LiteRT latency, batch 1, 1 thread (ms, median)")
        ax.set_title(f"{quant}")
        ax.legend(loc="lower right")
    axes[0].set_ylabel("test accuracy (LiteRT, 10,000 images)")
    fig.suptitle("Fashion-MNIST: compact students vs the MobileNetV2 teacher")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/fashion_mnist_fast.yaml")
    ap.add_argument("--teacher", default="runs/fashion_mnist/teacher.keras")
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=sorted(PRESETS))
    ap.add_argument("--modes", nargs="+", default=["student", "kd"])
    ap.add_argument("--epochs", type=int, help="override student.train.epochs")
    ap.add_argument("--runs", type=int, default=300, help="timed invokes per file")
    ap.add_argument("--work", default="runs/students_bench")
    ap.add_argument("--out", default="benchmarks/results/students_fashion_mnist.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    t_start = time.time()
    overrides = [f"teacher.path={os.path.abspath(args.teacher)}"]
    if args.epochs:
        overrides.append(f"student.train.epochs={args.epochs}")
    cfg = load_config(args.config, overrides)
    splits = load_splits(cfg.data)
    teacher = load_model_file(args.teacher, "--teacher")
    t_norm = cfg.teacher.train.input_norm
    tx = (splits.test.x.astype("float32") / 255.0 - np.array(splits.mean)) / np.array(splits.std) \
        if t_norm == "dataset" else splits.test.x.astype("float32") / 255.0
    teacher_acc = float((teacher.predict(tx, batch_size=256, verbose=0).argmax(1)
                         == splits.test.y).mean())
    log.info("Teacher Keras fp32 test accuracy %.4f on %d images", teacher_acc, len(splits.test))
    os.makedirs(args.work, exist_ok=True)
    logits = student_logit_cache(cfg, os.path.join(args.work, "teacher_logits"), args.teacher,
                                 splits, teacher=teacher)
    export_dir = os.path.join(args.work, "export")
    models = [{"name": "teacher", "model": cfg.teacher.model.name,
               "kwargs": dict(cfg.teacher.model.kwargs), "mode": "teacher",
               "keras_path": os.path.abspath(args.teacher), "params": trainable_params(teacher),
               "macs": count_macs(teacher), "input_norm": t_norm, "train_seconds": None}]
    for design in args.designs:
        dcfg = _student_cfg(cfg, design, args.modes)
        for mode in args.modes:
            m = train_student(plan_of(dcfg, os.path.join(args.work, design), splits,
                                      cached=logits), Unit(mode, 0))
            log.info("%-22s %-8s val %.4f test %.4f (%.0f s)", design, mode, m["val_accuracy"],
                     m["test_accuracy"], m["train_seconds"])
            models.append({"name": design, "model": PRESETS[design][0],
                           "kwargs": dict(PRESETS[design][1]), "mode": mode,
                           "keras_path": m["keras_path"], "params": m["trainable_params"],
                           "macs": m["macs"], "input_norm": cfg.student.train.input_norm,
                           "keras_test_accuracy": m["test_accuracy"],
                           "train_seconds": m["train_seconds"]})
    files, rows = [], []
    for m in models:
        stem = f"{m['name']}-{m['mode']}"
        for quant in ("fp32", "int8"):
            meta = _export(m["keras_path"], splits, cfg, quant, "phone", export_dir, stem)
            row = {k: m[k] for k in ("name", "model", "kwargs", "mode", "params", "macs",
                                     "train_seconds")}
            row.update(quant=quant, bytes=meta["bytes"], path=meta["path"],
                       test_accuracy=meta["checks"]["litert"]["accuracy"],
                       keras_test_accuracy=meta["checks"]["litert"]["keras_accuracy"],
                       agreement_with_keras=meta["checks"]["litert"]["agreement_with_keras"])
            if quant == "int8" and m["mode"] != "teacher":
                try:
                    mcu = _export(m["keras_path"], splits, cfg, "int8", "mcu", export_dir, stem)
                    row["mcu"] = {"bytes": mcu["bytes"],
                                  "arena_bytes": mcu["checks"]["tflm"]["arena_bytes"],
                                  "tflm_accuracy": mcu["checks"]["tflm"]["accuracy"],
                                  "tflm_images": mcu["checks"]["tflm"]["images"]}
                except Exception as e:  # noqa: BLE001 - a model too big for the MCU profile
                    row["mcu"] = {"error": str(e).splitlines()[0][:300]}
            rows.append(row)
            files.append({"path": meta["path"], "name": stem, "quant": quant})
    log.info("Timing %d files side by side (%d invokes each)...", len(files), args.runs)
    timed = {(t["name"], t["quant"]): t for t in benchmark_tflite(
        files, batches=(1,), threads=(1,), runs=args.runs, warmup=max(20, args.runs // 10),
        progress=False)}
    for row, f in zip(rows, files):
        t = timed[(f["name"], f["quant"])]
        row.update(latency_ms_median=t["median_ms"], latency_ms_p90=t["p90_ms"],
                   latency_ms_min=t["min_ms"], latency_ms_iqr=t["iqr_ms"], runs=t["runs"])
    base = {r["quant"]: r["latency_ms_median"] for r in rows if r["mode"] == "teacher"}
    for r in rows:
        r["speedup_vs_teacher_fp32"] = base["fp32"] / r["latency_ms_median"]
        r["speedup_vs_teacher_same_quant"] = base[r["quant"]] / r["latency_ms_median"]
        r["accuracy_vs_teacher_points"] = 100 * (r["test_accuracy"] - teacher_acc)
    goals = _goals(rows, teacher_acc)
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "config": args.config, "sizes": splits.sizes(), "dataset": splits.name,
        "teacher": {"test_accuracy": teacher_acc, "path": os.path.abspath(args.teacher),
                    "model": cfg.teacher.model.name, "kwargs": dict(cfg.teacher.model.kwargs)},
        "student_recipe": dataclasses.asdict(cfg.student.train),
        "rows": rows, "goals": goals, "machine": machine_info(),
        "wall_seconds": time.time() - t_start,
    }
    write_result(args.out, result)
    plot(rows, os.path.splitext(args.out)[0] + ".png")
    _print(rows, goals, teacher_acc)
    return result


def _goals(rows, teacher_acc):
    """The issue's goals, each with the best candidate and by how much it meets or misses them."""
    int8 = [r for r in rows if r["quant"] == "int8" and r["mode"] != "teacher"]
    fast = [r for r in int8 if r["speedup_vs_teacher_same_quant"] >= 10
            and r["speedup_vs_teacher_fp32"] >= 25]
    fast_ok = [r for r in fast if r["accuracy_vs_teacher_points"] >= -1.0]
    best_fast = max(fast_ok or fast or int8, key=lambda r: r["test_accuracy"])
    mcu = [r for r in int8 if "arena_bytes" in r.get("mcu", {})
           and r["mcu"]["bytes"] <= 128 * 1024 and r["mcu"]["arena_bytes"] <= 64 * 1024]
    mcu_ok = [r for r in mcu if r["accuracy_vs_teacher_points"] >= -1.5]
    best_mcu = max(mcu_ok or mcu or int8, key=lambda r: r["test_accuracy"])

    def brief(r):
        return {k: r.get(k) for k in ("name", "mode", "test_accuracy", "accuracy_vs_teacher_points",
                                      "speedup_vs_teacher_same_quant", "speedup_vs_teacher_fp32",
                                      "mcu")}

    return {
        "fast": {"goal": "int8 >= 10x teacher int8 and >= 25x teacher fp32, within 1.0 point",
                 "met": bool(fast_ok), "best": brief(best_fast)},
        "mcu": {"goal": "int8 <= 128 KB flash, TFLM arena <= 64 KB, within 1.5 points",
                "met": bool(mcu_ok), "best": brief(best_mcu)},
        "teacher_test_accuracy": teacher_acc,
    }


def _print(rows, goals, teacher_acc):
    print(f"teacher Keras fp32 test accuracy {teacher_acc:.4f}")
    print(f"{'model':<22}{'mode':<9}{'quant':<6}{'MACs':>12}{'bytes':>11}{'acc':>8}"
          f"{'ms':>9}{'x fp32':>8}{'x same':>8}{'arena':>10}")
    for r in rows:
        arena = r.get("mcu", {}).get("arena_bytes")
        print(f"{r['name']:<22}{r['mode']:<9}{r['quant']:<6}{r['macs']:>12,}{r['bytes']:>11,}"
              f"{r['test_accuracy']:>8.4f}{r['latency_ms_median']:>9.4f}"
              f"{r['speedup_vs_teacher_fp32']:>8.1f}{r['speedup_vs_teacher_same_quant']:>8.1f}"
              f"{arena if arena else '-':>10}")
    for key in ("fast", "mcu"):
        g = goals[key]
        b = g["best"]
        print(f"goal {key}: {'MET' if g['met'] else 'NOT met'} ({g['goal']}); best {b['name']} "
              f"{b['mode']}: acc {b['test_accuracy']:.4f} ({b['accuracy_vs_teacher_points']:+.2f} "
              f"points), {b['speedup_vs_teacher_same_quant']:.1f}x int8, "
              f"{b['speedup_vs_teacher_fp32']:.1f}x vs fp32 teacher")


if __name__ == "__main__":
    main()
