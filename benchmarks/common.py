"""Timing helpers shared by the benchmark scripts: warm-up, repeats, median and spread."""

from __future__ import annotations

import json
import os
import time

import numpy as np



def time_repeats(fn, repeats, warmup=1):
    """Runs ``fn`` ``warmup`` times untimed, then ``repeats`` timed; returns seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out)


def rate_stats(seconds, items):
    """Items/s: median and the [min, max] over repeats."""
    rates = items / np.asarray(seconds)
    return {"median": float(np.median(rates)), "min": float(rates.min()),
            "max": float(rates.max()), "repeats": int(len(rates))}


def write_result(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")


def stand_ins(cfg, splits, teacher_path=None):
    """(teacher, IG maps, cached logits) for timing: their values do not change the cost.

    The teacher is ``teacher_path`` if given, else a random-init model of the
    config's architecture; maps and logits are seeded random arrays of the
    right shapes, aligned with ``splits.train``.
    """
    import keras

    from tfigkd.models import build_model, load_model_file

    if teacher_path:
        teacher = load_model_file(teacher_path, "--teacher")
    else:
        keras.utils.set_random_seed(1)
        teacher = build_model(cfg.teacher.model.name, splits.input_shape, splits.num_classes,
                              **cfg.teacher.model.kwargs)
    rng = np.random.default_rng(0)
    n = len(splits.train)
    maps = rng.random((n, *splits.input_shape[:2])).astype(np.float16)
    logits = rng.normal(size=(n, splits.num_classes)).astype(np.float32)
    return teacher, maps, logits
