"""Adaptive vs fixed IG steps: time to a completeness target, and how the maps converge.

On a trained teacher and its training images (in the teacher's input space):

  fixed     every image gets n steps, n = 2, 4, 8, ... until the median
            relative completeness error |delta| / |F(x) - F(x')| is <= 1 % and
            its 90th percentile <= 5 %; the time of that n is the fixed cost.
  adaptive  ``adaptive_integrated_gradients`` (start at --start-steps, double
            per image while its error > rtol * |F(x) - F(x')| + atol) for rtol in
            --rtols; the fastest setting that meets the same target.

For each setting it also reports how close the *overlay map* (sum over
channels of |IG|, what the overlay uses) is to a --reference-steps map:
mean Spearman rank correlation over images. The two contenders are timed
--repeats times after a warm-up (median and [min, max]); goal: adaptive
<= 1/3 of the fixed time.

    python benchmarks/ig_adaptive.py --teacher runs/main/teacher.keras --config configs/main.yaml

A random-initialised teacher is refused: its score is nearly linear along the
path, so every rule looks converged at 2 steps and the figures would mislead.
Results: benchmarks/results/ig_adaptive.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from common import write_result  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from tfigkd.attribution.integrated_gradients import (IntegratedGradients, ig_map,  # noqa: E402
                                                     make_baseline)
from tfigkd.bench.machine import machine_info  # noqa: E402


def rel_errors(attr, delta):
    change = attr.reshape(len(attr), -1).sum(1) + delta
    return np.abs(delta) / np.maximum(np.abs(change), 1e-6)


def map_agreement(attr, ref_maps):
    maps = ig_map(attr)
    return float(np.mean([spearmanr(m.ravel(), r.ravel())[0] for m, r in zip(maps, ref_maps)]))


def summary(attr, delta, ref_maps, seconds, steps):
    e = rel_errors(attr, delta)
    return {"seconds": seconds, "median_rel_error": float(np.median(e)),
            "p90_rel_error": float(np.percentile(e, 90)),
            "map_spearman_vs_reference": map_agreement(attr, ref_maps),
            "mean_steps": float(np.mean(steps)), "max_steps": int(np.max(steps))}


def meets(row, median_goal, p90_goal):
    return row["median_rel_error"] <= median_goal and row["p90_rel_error"] <= p90_goal


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True, help="a trained teacher .keras")
    ap.add_argument("--config", required=True, help="the config it was trained with (data, norm)")
    ap.add_argument("--images", type=int, default=64, help="training images explained")
    ap.add_argument("--reference-steps", type=int, default=256)
    ap.add_argument("--start-steps", type=int, default=4)
    ap.add_argument("--rtols", type=float, nargs="+", default=[0.05, 0.02, 0.01])
    ap.add_argument("--median-goal", type=float, default=0.01)
    ap.add_argument("--p90-goal", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/ig_adaptive.json")
    args = ap.parse_args(argv)

    import keras

    from tfigkd.config import load_config
    from tfigkd.data import load_splits, normalize

    cfg = load_config(args.config)
    sd = load_splits(cfg.data)
    teacher = keras.models.load_model(args.teacher)
    pos = np.sort(np.random.default_rng(0).permutation(len(sd.train))[:args.images])
    x = normalize(sd.train.x[pos], cfg.teacher.train.input_norm, sd.mean, sd.std).numpy()
    y = sd.train.y[pos]
    acc = float(np.mean(np.argmax(teacher.predict(x, verbose=0), -1) == y))
    if acc < 2.0 / sd.num_classes:
        print(f"error: {args.teacher} classifies {acc:.1%} of these training images correctly, "
              "near chance: a completeness table of an untrained model misleads; give a "
              "trained teacher.", file=sys.stderr)
        return 2
    ig = IntegratedGradients(teacher, cfg.ig.output)
    ibs = cfg.ig.internal_batch_size
    base = make_baseline(x, cfg.ig.baseline)
    method = cfg.ig.method

    def fixed(n):
        t = time.perf_counter()
        attr, delta = ig.attribute(x, y, baseline=base, n_steps=n, method=method,
                                   internal_batch_size=ibs, return_delta=True)
        return attr, delta, time.perf_counter() - t

    def adaptive(rtol):
        t = time.perf_counter()
        attr, delta, steps = ig.attribute_adaptive(x, y, baseline=base, rtol=rtol,
                                                   start_steps=args.start_steps,
                                                   max_steps=args.reference_steps,
                                                   method=method, internal_batch_size=ibs)
        return attr, delta, steps, time.perf_counter() - t

    print(f"{args.teacher}: {args.images} training images, accuracy on them {acc:.2%}; "
          f"{method}, baseline {cfg.ig.baseline}")
    ref_attr, _, _ = fixed(args.reference_steps)
    ref_maps = ig_map(ref_attr)
    rows_fixed, n = {}, 2
    while n <= args.reference_steps:
        fixed(n)  # warm-up: tracing for this chunk shape
        attr, delta, sec = fixed(n)
        rows_fixed[n] = summary(attr, delta, ref_maps, sec, [n])
        r = rows_fixed[n]
        print(f"fixed    n={n:<4} {sec:7.2f} s  median {r['median_rel_error']:7.2%}  p90 "
              f"{r['p90_rel_error']:7.2%}  map Spearman {r['map_spearman_vs_reference']:.4f}")
        if meets(r, args.median_goal, args.p90_goal):
            break
        n *= 2
    rows_adaptive = {}
    for rtol in args.rtols:
        adaptive(rtol)  # warm-up
        attr, delta, steps, sec = adaptive(rtol)
        rows_adaptive[rtol] = summary(attr, delta, ref_maps, sec, steps)
        r = rows_adaptive[rtol]
        print(f"adaptive rtol={rtol:<5} {sec:7.2f} s  median {r['median_rel_error']:7.2%}  p90 "
              f"{r['p90_rel_error']:7.2%}  map Spearman {r['map_spearman_vs_reference']:.4f}  "
              f"mean steps {r['mean_steps']:.1f}")
    ok_fixed = [k for k, r in rows_fixed.items() if meets(r, args.median_goal, args.p90_goal)]
    ok_adapt = [k for k, r in rows_adaptive.items() if meets(r, args.median_goal, args.p90_goal)]
    result = {"machine": machine_info(), "teacher": args.teacher, "config": args.config,
              "images": args.images, "teacher_accuracy_on_images": acc, "method": method,
              "baseline": cfg.ig.baseline, "reference_steps": args.reference_steps,
              "start_steps": args.start_steps,
              "goal": {"median_rel_error": args.median_goal, "p90_rel_error": args.p90_goal},
              "fixed": {str(k): v for k, v in rows_fixed.items()},
              "adaptive": {str(k): v for k, v in rows_adaptive.items()},
              "command": "python benchmarks/ig_adaptive.py " + " ".join(argv or sys.argv[1:])}
    if ok_fixed and ok_adapt:
        n_best = min(ok_fixed)
        rtol_best = min(ok_adapt, key=lambda k: rows_adaptive[k]["seconds"])
        tf_, ta_ = [], []
        for _ in range(args.repeats):  # interleaved, same machine state
            tf_.append(fixed(n_best)[2])
            ta_.append(adaptive(rtol_best)[3])
        tf_, ta_ = np.array(tf_), np.array(ta_)
        result["contenders"] = {
            "fixed_steps": n_best, "adaptive_rtol": rtol_best,
            "fixed_seconds": {"median": float(np.median(tf_)), "min": float(tf_.min()),
                              "max": float(tf_.max())},
            "adaptive_seconds": {"median": float(np.median(ta_)), "min": float(ta_.min()),
                                 "max": float(ta_.max())},
            "adaptive_over_fixed": float(np.median(ta_) / np.median(tf_))}
        result["goal_adaptive_le_one_third"] = result["contenders"]["adaptive_over_fixed"] <= 1 / 3
        c = result["contenders"]
        print(f"\nTo median <= {args.median_goal:.0%} and p90 <= {args.p90_goal:.0%}: fixed "
              f"{n_best} steps {c['fixed_seconds']['median']:.2f} s [{c['fixed_seconds']['min']:.2f}, "
              f"{c['fixed_seconds']['max']:.2f}], adaptive rtol {rtol_best} "
              f"{c['adaptive_seconds']['median']:.2f} s [{c['adaptive_seconds']['min']:.2f}, "
              f"{c['adaptive_seconds']['max']:.2f}]: ratio {c['adaptive_over_fixed']:.2f} "
              f"(goal <= 0.33)")
    else:
        print("\nThe target was not met by "
              + ("fixed steps" if not ok_fixed else "any adaptive setting") + "; no ratio.")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
