"""What a KD epoch costs next to a plain one: online, cached-clean and per-view teacher logits.

Side by side in one process, on the shipped teacher and the main job's data
and student (``configs/main.yaml``), each case trains one student through
``train_student`` (the real stage) for ``--epochs`` epochs in a fresh
folder. An epoch's cost is its wall time from start to the end of its
per-epoch work (validation, precise BatchNorm, checkpoint); the first epoch
(tracing) is dropped, and the median and [min, max] of the rest are given.
The per-view cache's one-time teacher pass is reported on its own and
amortised over the epochs it serves.

    .venv/bin/python benchmarks/kd_epoch_cost.py [--epochs 4] [--rounds 2]

Results: ``benchmarks/results/kd_epoch_cost.json``. Goal (issue "Distillation
that pays"): a KD epoch from the per-view cache costs <= 1.2x a plain epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tfigkd.config import load_config  # noqa: E402

log = logging.getLogger("kd_epoch_cost")
CONFIG = os.path.join(ROOT, "configs", "main.yaml")
RESULT = os.path.join(ROOT, "benchmarks", "results", "kd_epoch_cost.json")
# case -> (mode, teacher_mode, mix)
CASES = {"plain": ("student", "online", "none"), "kd_online": ("kd", "online", "none"),
         "kd_cached": ("kd", "cached", "none"), "kd_per_view": ("kd", "per_view", "none"),
         "kd_per_view_mixup": ("kd", "per_view", "mixup")}


def run_case(cfg, splits, teacher, tpath, name, epochs, work):
    from tfigkd.distill.logit_cache import student_logit_cache
    from tfigkd.experiments.plan import Unit, plan_of
    from tfigkd.experiments.student import train_student
    from tfigkd.io import read_json

    mode, teacher_mode, mix = CASES[name]
    c = dataclasses.replace(cfg, student=dataclasses.replace(
        cfg.student, teacher_mode=teacher_mode, mix=mix,
        train=dataclasses.replace(cfg.student.train, epochs=epochs, verbose=0)))
    folder = os.path.join(work, name)
    cached = (student_logit_cache(c, os.path.join(folder, "teacher_logits"), tpath, splits,
                                  teacher=teacher) if teacher_mode == "cached" else None)
    train_student(plan_of(c, folder, splits, teacher=teacher, cached=cached), Unit(mode, 0))
    state = read_json(os.path.join(folder, "students", f"{mode}-s0", "work", "state.json"))
    out = {"epoch_seconds": state["epoch_seconds"][1:]}
    views = os.path.join(folder, "teacher_views")
    if os.path.isdir(views):
        (key,) = os.listdir(views)
        out["cache_seconds"] = read_json(os.path.join(views, key, "manifest.json"))["seconds"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all cases")
    ap.add_argument("--result", default=RESULT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from tfigkd.bench.machine import machine_info
    from tfigkd.data import load_splits
    from tfigkd.io import write_json
    from tfigkd.layout import teacher_path
    from tfigkd.models import load_model_file

    cfg = load_config(args.config)
    splits = load_splits(cfg.data)
    tpath = teacher_path(cfg, None)
    teacher = load_model_file(tpath, "teacher")
    seconds = {k: [] for k in CASES}
    cache = {}
    for r in range(args.rounds):
        for name in CASES:  # interleaved: load changes hit every case alike
            work = tempfile.mkdtemp(prefix="tfigkd-kd-cost-")
            try:
                res = run_case(cfg, splits, teacher, tpath, name, args.epochs, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            seconds[name] += res["epoch_seconds"]
            if "cache_seconds" in res:
                cache.setdefault(name, []).append(res["cache_seconds"])
            log.info("round %d %s: %s s per epoch", r, name,
                     ", ".join(f"{s:.2f}" for s in res["epoch_seconds"]))
    plain = float(np.median(seconds["plain"]))
    rows = {}
    for name, s in seconds.items():
        med = float(np.median(s))
        row = {"median_s": med, "min_s": float(min(s)), "max_s": float(max(s)), "n": len(s),
               "ratio_to_plain": med / plain}
        if name in cache:
            c = float(np.median(cache[name]))
            row.update(cache_seconds=c, cache_per_epoch_s=c / args.epochs,
                       ratio_to_plain_with_cache=(med + c / args.epochs) / plain)
        rows[name] = row
    result = {"command": "python benchmarks/kd_epoch_cost.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "config": os.path.relpath(args.config, ROOT), "sizes": splits.sizes(),
              "epochs": args.epochs, "rounds": args.rounds, "machine": machine_info(),
              "cases": {k: dict(zip(("mode", "teacher_mode", "mix"), v)) for k, v in CASES.items()},
              "epoch_cost": rows,
              "goal": "a KD epoch from the per-view cache <= 1.2x a plain epoch"}
    write_json(args.result, result)
    for name, row in rows.items():
        log.info("%-18s %.2f s/epoch [%.2f, %.2f]  %.2fx plain%s", name, row["median_s"],
                 row["min_s"], row["max_s"], row["ratio_to_plain"],
                 f"  (one-time cache {row['cache_seconds']:.1f} s)" if "cache_seconds" in row
                 else "")


if __name__ == "__main__":
    main()
