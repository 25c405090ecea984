"""Measured int8 latency of a model design, cached per design: a tuning objective.

Users budget in milliseconds on their device, not in multiply-adds, and the
two disagree (depthwise layers, small tensors and per-op overhead cost more
than their MACs say). ``tune.objectives: [val_accuracy, latency_ms]`` trades
validation accuracy against the int8 LiteRT latency (batch 1, 1 thread) of
the trial's student, measured here.

Latency depends on the architecture, not on the trained weights, so it is
measured once per design (the model's config, input shape and classes) and
kept in a JSON file beside the study, under a lock, so that trials and
workers that build the same design share one measurement.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile

import numpy as np

from tfigkd.io import read_json, write_json
from tfigkd.lock import folder_lock

log = logging.getLogger(__name__)

CACHE_FILE = "latency_cache.json"


def design_key(model, runs):
    """A stable key of what the latency depends on: layers and their settings, shapes, runs."""
    # Each layer's type, settings and output shape, without the names Keras makes up
    # (a second build of one design gets conv2d_1 where the first got conv2d).
    layers = [(type(layer).__name__,
               {k: v for k, v in layer.get_config().items() if k != "name"},
               str(getattr(layer, "output", None) is not None and layer.output.shape))
              for layer in model.layers]
    shape = [list(model.input_shape[1:]), list(model.output_shape[1:])]
    blob = json.dumps({"layers": layers, "shape": shape, "runs": int(runs)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def measure_int8_latency_ms(model, runs=100, warmup=10):
    """Median LiteRT latency (ms, batch 1, 1 thread) of ``model`` converted to int8.

    Calibrated on random images (the latency does not depend on the scales).
    """
    from tfigkd.bench.latency import benchmark_tflite
    from tfigkd.export.tflite import convert

    calib = np.random.default_rng(0).random((32, *model.input_shape[1:])).astype(np.float32)
    data = convert(model, "int8", calib)
    with tempfile.TemporaryDirectory(prefix="tfigkd-latency-") as tmp:
        path = os.path.join(tmp, "model_int8.tflite")
        with open(path, "wb") as f:
            f.write(data)
        (row,) = benchmark_tflite([{"path": path, "name": "model"}], batches=(1,), threads=(1,),
                                  runs=runs, warmup=warmup, progress=False)
    return float(row["median_ms"])


def cached_int8_latency_ms(model, folder, runs=100, measure=measure_int8_latency_ms):
    """``measure(model, runs)`` once per design, read back from ``folder/latency_cache.json``.

    Returns:
        (latency in ms, whether it was measured now).
    """
    os.makedirs(folder, exist_ok=True)
    key = design_key(model, runs)
    path = os.path.join(folder, CACHE_FILE)
    with folder_lock(folder, ".tfigkd-latency.lock", wait=True):
        cache = read_json(path) if os.path.exists(path) else {}
        if key in cache:
            return float(cache[key]["median_ms"]), False
        ms = float(measure(model, runs))
        cache[key] = {"median_ms": ms, "runs": int(runs), "model": model.name}
        write_json(path, cache)
    log.info("int8 latency of this design: %.4f ms (LiteRT, batch 1, 1 thread, median of %d).",
             ms, runs)
    return ms, True
