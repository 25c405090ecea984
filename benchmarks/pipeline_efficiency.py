"""Training inside the pipeline vs the bare train step: where does the time go?

For the teacher and for a student in modes ``student``, ``kd`` (online,
cached-clean and per-view teacher logits, and per-view with mixup) and
``kd_ig`` (per-view, as the main job), side by side in one run:

  bare      the model's traced ``train_step`` on a persistent iterator of the
            real training dataset (the pipeline's batches, the last of an
            epoch partial as there, augmentation, overlay, mixing, KD):
            images/s, median and [min, max] over ``--repeats`` epochs after
            a warm-up epoch, timed both before and after the pipeline;
  pipeline  the real stage (``train_teacher`` / ``train_student``) for
            ``--epochs`` epochs in a fresh folder: images/s of each epoch
            after the first, by wall time from the epoch's start to the end
            of its per-epoch work (validation, precise BatchNorm, checkpoint,
            best-model save), median and [min, max];
  ratio     pipeline / bare (goal: >= 0.9 in every case).

    python benchmarks/pipeline_efficiency.py --config configs/main.yaml

Cached logits and IG maps are random arrays of the right shape (their values
do not change the cost); the teacher is a random-init model of the config's
architecture (trained from scratch in the ``teacher`` case, even where the
config adopts a teacher file; the per-view cases compute their cache of its
logits once, before the timed epochs). Results:
benchmarks/results/pipeline_efficiency.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's tfigkd, not an installed one
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import stand_ins, write_result  # noqa: E402

from tfigkd.config import load_config  # noqa: E402
from tfigkd.data import load_splits  # noqa: E402
from tfigkd.experiments.common import (classification_compile, machine_info,  # noqa: E402
                                       steps_per_epoch, training_data)
from tfigkd.experiments.optim import build_optimizer  # noqa: E402
from tfigkd.experiments.plan import Unit, plan_of  # noqa: E402
from tfigkd.experiments.student import build_distillation, train_student  # noqa: E402
from tfigkd.experiments.teacher import train_teacher  # noqa: E402
from tfigkd.io import read_json  # noqa: E402
from tfigkd.models import build_model  # noqa: E402

log = logging.getLogger("pipeline_efficiency")

# case -> (mode, teacher_mode, mix); "teacher" is the teacher's own training.
CASES = {"teacher": (None, None, None), "student": ("student", "online", "none"),
         "kd_online": ("kd", "online", "none"), "kd_cached": ("kd", "cached", "none"),
         "kd_per_view": ("kd", "per_view", "none"),
         "kd_per_view_mixup": ("kd", "per_view", "mixup"), "kd_ig": ("kd_ig", "per_view", "none")}


def _case_config(cfg, case, epochs):
    """The config of a student case: its teacher mode and mixing, ``epochs`` epochs."""
    _, teacher_mode, mix = CASES[case]
    return dataclasses.replace(cfg, student=dataclasses.replace(
        cfg.student, teacher_mode=teacher_mode, mix=mix,
        train=dataclasses.replace(cfg.student.train, epochs=epochs, verbose=0)))


def bare_rate(case, cfg, splits, teacher, maps, logits, repeats, work):
    """Images/s of the traced train step alone, one epoch's steps per repeat."""
    mode = CASES[case][0]
    if mode is None:
        tcfg = cfg.teacher.train
        keras.utils.set_random_seed(tcfg.seed)
        model = build_model(cfg.teacher.model.name, splits.input_shape, splits.num_classes,
                            **cfg.teacher.model.kwargs)
        steps = steps_per_epoch(len(splits.train), tcfg.batch_size)
        classification_compile(model, build_optimizer(tcfg.optimizer, tcfg.epochs, steps))
        ds = training_data(splits, tcfg, tcfg.seed)(0, None)
        batch = tcfg.batch_size
    else:
        vcfg = _case_config(cfg, case, repeats + 1)  # per-view cache: the epochs timed
        model, data = build_distillation(
            vcfg, splits, mode, 0, teacher=teacher, maps=maps,
            cached=logits if vcfg.student.teacher_mode == "cached" else None,
            view_dir=tempfile.mkdtemp(prefix="views-", dir=work),
            teacher_file=cfg.teacher.path)
        ds = data(0, None)
        batch = cfg.student.train.batch_size
    model.optimizer.build(model.trainable_variables)
    step = tf.function(model.train_step)
    it = iter(ds)
    n_steps = steps_per_epoch(len(splits.train), batch)  # as fit_resumable's epochs
    rates = []
    for r in range(repeats + 1):
        t = time.perf_counter()
        for _ in range(n_steps):
            logs = step(next(it))
        float(logs["loss"])  # wait for the last step
        if r:  # round 0: tracing (full and partial batch) and tf.data start-up
            rates.append(len(splits.train) / (time.perf_counter() - t))
    return np.array(rates)


def pipeline_rate(case, cfg, splits, teacher, maps, logits, epochs, work):
    """Images/s of whole epochs (after the first) through the real stage."""
    mode = CASES[case][0]
    out = tempfile.mkdtemp(prefix=f"{case}-", dir=work)
    if mode is None:
        c = dataclasses.replace(cfg, teacher=dataclasses.replace(
            cfg.teacher, path=None,
            train=dataclasses.replace(cfg.teacher.train, epochs=epochs, verbose=0)))
        train_teacher(c, out, splits=splits, verbose=0)
        state = read_json(os.path.join(out, "work", "teacher", "state.json"))
    else:
        c = _case_config(cfg, case, epochs)
        train_student(plan_of(c, out, splits, teacher=teacher, maps=maps,
                              cached=logits if c.student.teacher_mode == "cached" else None),
                      Unit(mode, 0))
        state = read_json(os.path.join(out, "students", f"{mode}-s0", "work", "state.json"))
    secs = np.array(state["epoch_seconds"])
    return len(splits.train) / secs[1:], float(secs[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/main.yaml")
    ap.add_argument("--images", type=int, default=None,
                    help="training subset (default: the config's data.train_subset)")
    ap.add_argument("--epochs", type=int, default=4, help="pipeline epochs per case (>= 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed bare epochs per case")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", default="benchmarks/results/pipeline_efficiency.json")
    ap.add_argument("--note", default=None,
                    help="recorded with the result, e.g. what else ran on the machine")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.epochs < 2:
        ap.error("--epochs must be >= 2: the first epoch (tracing) is not timed")

    overrides = [f"data.train_subset={args.images}"] if args.images else []
    cfg = load_config(args.config, overrides)
    splits = load_splits(cfg.data)
    teacher, maps, logits = stand_ins(cfg, splits)
    work = tempfile.mkdtemp(prefix="tfigkd-pipeline-")
    # The per-view cases key their cache by the teacher's file: the stand-in's.
    tpath = os.path.join(work, "teacher.keras")
    teacher.save(tpath)
    cfg = dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, path=tpath))
    n = len(splits.train)
    log.info("%s: %d training images %s; student %s %s batch %d; teacher %s batch %d",
             splits.name, n, splits.input_shape, cfg.student.model.name,
             cfg.student.model.kwargs, cfg.student.train.batch_size, cfg.teacher.model.name,
             cfg.teacher.train.batch_size)
    result = {"machine": machine_info(), "config": args.config, "train_images": n,
              "val_images": len(splits.val), "epochs": args.epochs, "repeats": args.repeats,
              "command": "python benchmarks/pipeline_efficiency.py " + " ".join(argv or sys.argv[1:]),
              "precise_bn_images": {"teacher": cfg.teacher.train.precise_bn_images,
                                    "student": cfg.student.train.precise_bn_images},
              "cases": {}}
    if args.note:
        result["note"] = args.note
    try:
        for case in args.cases:
            # The bare step is timed before and after the pipeline and the two are
            # pooled: this VM's speed drifts by several per cent over minutes, and a
            # bracket keeps the drift out of the ratio.
            before = bare_rate(case, cfg, splits, teacher, maps, logits, args.repeats, work)
            pipe, first = pipeline_rate(case, cfg, splits, teacher, maps, logits, args.epochs, work)
            after = bare_rate(case, cfg, splits, teacher, maps, logits, args.repeats, work)
            bare = np.concatenate([before, after])
            row = {"bare_img_s": float(np.median(bare)), "bare_min": float(bare.min()),
                   "bare_max": float(bare.max()), "bare_before_img_s": float(np.median(before)),
                   "bare_after_img_s": float(np.median(after)),
                   "pipeline_img_s": float(np.median(pipe)), "pipeline_min": float(pipe.min()),
                   "pipeline_max": float(pipe.max()), "first_epoch_seconds": first}
            row["ratio"] = row["pipeline_img_s"] / row["bare_img_s"]
            result["cases"][case] = row
            log.info("%-17s bare %7.1f img/s [%6.1f, %6.1f]  pipeline %7.1f img/s [%6.1f, %6.1f]  "
                     "ratio %.2f  (first epoch %.1f s)", case, row["bare_img_s"], row["bare_min"],
                     row["bare_max"], row["pipeline_img_s"], row["pipeline_min"],
                     row["pipeline_max"], row["ratio"], first)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["goal_ratio_ge_0.9_everywhere"] = all(r["ratio"] >= 0.9
                                                 for r in result["cases"].values())
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
