"""Teacher inference in tfigkd's batched paths vs the bare forward pass, side by side.

  bare          a tf.function of ``teacher(x, training=False)`` over batches
                of a normalised tensor already in memory (the compute bound
                for this batch size);
  logit_cache   ``tfigkd.distill.logit_cache.compute_logits`` on the same
                images from uint8 (its tf.data pipeline: normalise, batch,
                resize to the teacher's size, the forward pass, to NumPy);
  ig_forward    the F(x) and F(x') forward pass of ``IntegratedGradients``
                (completeness), on ig.batch_size images and their baselines
                per call, as ``attribute(return_delta=True)`` runs it;
  per_view      ``compute_view_logits`` with ``view_forward``, as the
                per-view cache runs them: one epoch of the student's training
                pipeline (crop, flip, the student's batch size), the teacher's
                normalisation of each view, the forward pass, rows ordered by
                view. Its bare reference (``bare_view_batch``) is the forward
                pass at the student's batch size on images in memory.

Each path runs once as warm-up, then --repeats times interleaved (median and
[min, max] of img/s); the ratio path / bare is the goal (>= 0.9). The values
do not change the cost, so a random-init teacher of the config's architecture
is timed when --teacher is not given.

    python benchmarks/teacher_inference.py --config configs/main.yaml --teacher runs/main/teacher.keras

Results: benchmarks/results/teacher_inference.json.
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
from common import rate_stats, stand_ins, write_result  # noqa: E402

from tfigkd.experiments.common import machine_info  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--teacher", default=None, help="a teacher .keras (default: random init)")
    ap.add_argument("--images", type=int, default=8192, help="training images pushed through")
    ap.add_argument("--batch-size", type=int, default=256,
                    help="the logit cache's batch (compute_logits' default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/teacher_inference.json")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from tfigkd.attribution.integrated_gradients import IntegratedGradients, make_baseline
    from tfigkd.config import load_config
    from tfigkd.data import load_splits, normalize
    from tfigkd.distill.logit_cache import compute_logits
    from tfigkd.distill.view_cache import compute_view_logits
    from tfigkd.experiments.common import training_data
    from tfigkd.experiments.student import teacher_affine, view_forward

    cfg = load_config(args.config)
    splits = load_splits(cfg.data)
    teacher, _, _ = stand_ins(cfg, splits, args.teacher)
    norm = cfg.teacher.train.input_norm
    sub = splits.train.take(np.arange(min(args.images, len(splits.train))))
    n = len(sub)
    x = normalize(sub.x, norm, splits.mean, splits.std)
    bs = args.batch_size
    bare_fn = tf.function(lambda b: teacher(b, training=False))
    batches = [x[i:i + bs] for i in range(0, n, bs)]

    def bare():
        return np.concatenate([bare_fn(b).numpy() for b in batches])

    def logit_cache():
        return compute_logits(teacher, sub, norm, splits.mean, splits.std, batch_size=bs)

    ig = IntegratedGradients(teacher, cfg.ig.output)
    ib = max(1, bs // 2)  # x and x' per image: the same rows per call as bare
    base = tf.constant(make_baseline(x.numpy(), cfg.ig.baseline))
    targets = tf.constant(sub.y)
    ig_batches = [(tf.concat([x[i:i + ib], base[i:i + ib]], 0),
                   tf.concat([targets[i:i + ib]] * 2, 0)) for i in range(0, n, ib)]

    def ig_forward():
        return np.concatenate([ig._forward(xb, tb).numpy() for xb, tb in ig_batches])

    # Per-view: the student's augmented batches of one epoch, in the student's input
    # space, normalised for the teacher inside the traced forward pass (as training does).
    scfg = cfg.student.train
    vb = scfg.batch_size
    t_mean, t_std = teacher_affine(cfg, splits)
    view_fn = view_forward(teacher, splits.input_shape, (t_mean, t_std))
    views = training_data(dataclasses.replace(splits, train=sub), scfg, 0, with_view=True)
    x_view = [x[i:i + vb] for i in range(0, n, vb)]

    def bare_view_batch():
        return np.concatenate([bare_fn(b).numpy() for b in x_view])

    def per_view():
        return compute_view_logits(view_fn, views(0, 1), n, splits.num_classes)

    paths = {"bare": bare, "logit_cache": logit_cache, "ig_forward": ig_forward,
             "bare_view_batch": bare_view_batch, "per_view": per_view}
    rows = {"bare": n, "logit_cache": n, "ig_forward": 2 * n, "bare_view_batch": n,
            "per_view": n}
    reference = {"logit_cache": "bare", "ig_forward": "bare", "per_view": "bare_view_batch"}
    ref = bare()
    np.testing.assert_allclose(logit_cache(), ref, rtol=1e-4, atol=1e-4)  # same numbers
    seconds = {k: [] for k in paths}
    for k, fn in paths.items():
        fn()  # warm-up: tracing, dataset cache
    for _ in range(args.repeats):  # interleaved: every path sees the same machine state
        for k, fn in paths.items():
            t = time.perf_counter()
            fn()
            seconds[k].append(time.perf_counter() - t)
    stats = {k: rate_stats(seconds[k], rows[k]) for k in paths}
    ratios = {k: stats[k]["median"] / stats[ref]["median"] for k, ref in reference.items()}
    for k in paths:
        s = stats[k]
        print(f"{k:<12} {s['median']:9.0f} img/s [{s['min']:.0f}, {s['max']:.0f}]"
              + (f"  {ratios[k]:.2f}x {reference[k]}" if k in ratios else ""))
    result = {"machine": machine_info(), "config": args.config,
              "teacher": args.teacher or f"random init {cfg.teacher.model.name}",
              "images": n, "batch_size": bs, "ig_images_per_call": ib,
              "input_shape": list(x.shape[1:]), "img_per_s": stats,
              "view_batch_size": vb, "ratio_vs_bare": ratios, "ratio_reference": reference,
              "goal": 0.9,
              "goal_met": {k: v >= 0.9 for k, v in ratios.items()},
              "command": "python benchmarks/teacher_inference.py " + " ".join(argv or sys.argv[1:])}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
