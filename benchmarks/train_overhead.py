"""Student training throughput: plain vs IG overlay vs KD online vs KD cached.

All four variants train the same student (the config's architecture) on the
same images with the same batch size and the same crop/flip augmentation;
only the extra work differs:

  plain       CE only (the Distiller with alpha = 0, no teacher)
  overlay     plain + the IG overlay batch transform (p from the config)
  kd_online   CE + KD with the teacher run on every augmented batch
  kd_cached   CE + KD with teacher logits looked up by example index

Each repeat trains ``--steps`` steps of every variant in turn (interleaved,
so all variants see the same machine state), calling each variant's traced
``train_step`` on its own persistent iterator (a first version timed
``fit()`` calls and measured fit set-up and iterator restarts, ~3 s each);
the first round is a warm-up (tracing, tf.data start-up) and is not timed. Figures are images/s, median
and [min, max] over the repeats; overheads are relative to plain.

    python benchmarks/train_overhead.py --config configs/quickstart.yaml \\
        [--teacher runs/quickstart/teacher.keras]

IG maps and cached logits are random arrays of the right shape here: their
values do not change the cost. Images come from the config's data source.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import stand_ins, write_result  # noqa: E402

from tfigkd.config import load_config  # noqa: E402
from tfigkd.data import load_splits  # noqa: E402
from tfigkd.bench.machine import machine_info  # noqa: E402
from tfigkd.experiments.student import build_distillation  # noqa: E402

# variant -> (mode, teacher_mode): the same builder as training (build_distillation).
VARIANT_MODES = {"plain": ("student", "online"), "overlay": ("ig", "online"),
                 "kd_online": ("kd", "online"), "kd_cached": ("kd", "cached")}
VARIANTS = tuple(VARIANT_MODES)


def build_variant(name, cfg, splits, teacher, maps, logits):
    mode, teacher_mode = VARIANT_MODES[name]
    vcfg = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student,
                                                                teacher_mode=teacher_mode))
    # drop_remainder: every timed step then trains exactly batch_size images.
    d, train_data = build_distillation(vcfg, splits, mode, 0, teacher=teacher, maps=maps,
                                       cached=logits if teacher_mode == "cached" else None,
                                       drop_remainder=True)
    d.optimizer.build(d.student.trainable_variables)  # variables must exist before tracing
    return d, train_data(0, None)  # epochs back to back, without end


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--teacher", help="trained teacher .keras (default: random init, same cost)")
    ap.add_argument("--images", type=int, default=2048, help="training images to cycle through")
    ap.add_argument("--steps", type=int, default=24, help="training steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/train_overhead.json")
    args = ap.parse_args(argv)

    cfg = load_config(args.config, [f"data.train_subset={args.images}"])
    splits = load_splits(cfg.data)
    teacher, maps, logits = stand_ins(cfg, splits, args.teacher)
    n = len(splits.train)
    batch = cfg.student.train.batch_size
    runs = {v: build_variant(v, cfg, splits, teacher, maps, logits) for v in VARIANTS}
    print(f"{splits.name}: {n} images {splits.input_shape}, batch {batch}, "
          f"{args.steps} steps x {args.repeats} repeats per variant, student "
          f"{cfg.student.model.name} {cfg.student.model.kwargs}")
    # One persistent iterator and one traced train step per variant: no fit()
    # set-up or iterator restarts inside the timed region, only the step and
    # the input pipeline feeding it.
    steppers = {}
    for v, (model, ds) in runs.items():
        it = iter(ds)
        fn = tf.function(model.train_step)
        steppers[v] = (it, fn)
    times = {v: [] for v in VARIANTS}
    for r in range(args.repeats + 1):
        for v in VARIANTS:
            it, fn = steppers[v]
            t = time.perf_counter()
            for _ in range(args.steps):
                logs = fn(next(it))
            float(logs["loss"])  # wait for the last step to finish
            if r > 0:  # round 0 = warm-up: tracing and tf.data start-up
                times[v].append(time.perf_counter() - t)
    images = args.steps * batch
    result = {"machine": machine_info(), "config": args.config, "images": n,
              "input_shape": list(splits.input_shape), "batch_size": batch,
              "steps_per_repeat": args.steps, "teacher": args.teacher or "random init",
              "p": cfg.student.p, "align_geometry": cfg.student.align_geometry, "variants": {}}
    plain = np.median(images / np.array(times["plain"]))
    print(f"{'variant':<10} {'img/s median':>12} {'[min, max]':>18} {'overhead vs plain':>18}")
    for v in VARIANTS:
        rates = images / np.array(times[v])
        med = float(np.median(rates))
        over = plain / med - 1.0  # extra time per image relative to plain
        result["variants"][v] = {"img_per_s_median": med, "img_per_s_min": float(rates.min()),
                                 "img_per_s_max": float(rates.max()), "repeats": len(rates),
                                 "time_overhead_vs_plain": float(over)}
        print(f"{v:<10} {med:12.1f} [{rates.min():7.1f}, {rates.max():7.1f}] {over:+17.1%}")
    result["goals"] = {
        "overlay_overhead_le_5pct": result["variants"]["overlay"]["time_overhead_vs_plain"] <= 0.05,
        "cached_kd_overhead_le_5pct":
            result["variants"]["kd_cached"]["time_overhead_vs_plain"] <= 0.05}
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
