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
