"""``tfigkd sweep``: the ablation repeated over students, and accuracy against cost per mode.

The students are the truncation depths ``sweep.truncation_depths`` (the
paper's compression-factor sweep) and the designs ``sweep.designs``
(presets from ``tfigkd.models.PRESETS`` or registered model names). Each is
ablated with ``tfigkd ablate`` in ``DIR/students/<name>/`` (resumable,
``--shard``-able, its own paired statistics) while the teacher, the overlay
map stores and the logit cache are shared in ``DIR`` itself. Costs
(parameters, MACs, int8 LiteRT latency at batch 1 on 1 thread, all designs
and the teacher timed in one interleaved run) come from the architectures
with random weights: weights do not change the cost of a dense network, so
costs do not wait for training. The result, ``DIR/sweep.json``,
``sweep.md`` and ``sweep.png``, gives every mode's accuracy against each
cost and its Pareto front.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile

import numpy as np

from tfigkd.errors import UserError
from tfigkd.io import atomic_path, read_json, write_json
from tfigkd.layout import SWEEP_COSTS, SWEEP_JSON, SWEEP_MD, SWEEP_PNG
from tfigkd.lock import folder_lock

log = logging.getLogger(__name__)

SWEEP_DIR = "students"


def sweep_students(scfg):
    """``{name: (builder, kwargs)}`` of a ``SweepConfig``: ``truncated_k<k>``, then the designs."""
    from tfigkd.models import resolve_design

    out = {f"truncated_k{k}": ("truncated_student", {"blocks_removed": int(k)})
           for k in scfg.truncation_depths}
    for name in scfg.designs:
        out[name] = resolve_design(name, "sweep.designs")
    if not out:
        raise UserError("The sweep has no students; set sweep.truncation_depths and/or "
                        "sweep.designs in the config.")
    return out


def student_config(cfg, builder, kwargs):
    """``cfg`` with the student model replaced."""
    from tfigkd.config import ModelConfig

    return dataclasses.replace(cfg, student=dataclasses.replace(
        cfg.student, model=ModelConfig(builder, dict(kwargs))))


def measure_costs(cfg, splits, students, runs=200, path=None):
    """Parameters, MACs and int8 latency of every student and the teacher (random weights).

    Reused from ``path`` when it holds the same designs, shape and run count.

    Returns:
        ``{"teacher": row, "designs": {name: row}}``; a row has ``model``,
        ``kwargs``, ``params``, ``macs``, ``int8_bytes``, ``int8_ms`` and ``int8_p90_ms``.
    """
    import keras

    from tfigkd.bench.latency import benchmark_tflite
    from tfigkd.export.tflite import convert
    from tfigkd.models import build_model, count_macs, trainable_params

    todo = {"teacher": (cfg.teacher.model.name, dict(cfg.teacher.model.kwargs)), **students}
    key = {"designs": {n: [b, k] for n, (b, k) in todo.items()},
           "input_shape": list(splits.input_shape), "num_classes": splits.num_classes,
           "runs": runs}
    if path and os.path.exists(path):
        old = read_json(path)
        if old.get("key") == key:
            return old["costs"]
    calib = np.random.default_rng(0).random((32, *splits.input_shape)).astype(np.float32)
    folder = tempfile.mkdtemp(prefix="tfigkd-sweep-")
    rows, files = {}, []
    for name, (builder, kwargs) in todo.items():
        keras.utils.set_random_seed(0)
        model = build_model(builder, splits.input_shape, splits.num_classes, **kwargs)
        data = convert(model, "int8", calib)
        fpath = os.path.join(folder, f"{name}_int8.tflite")
        with open(fpath, "wb") as f:
            f.write(data)
        files.append({"path": fpath, "name": name})
        rows[name] = {"model": builder, "kwargs": dict(kwargs), "params": trainable_params(model),
                      "macs": count_macs(model), "int8_bytes": len(data)}
        keras.backend.clear_session()
    for t in benchmark_tflite(files, batches=(1,), threads=(1,), runs=runs,
                              warmup=max(5, runs // 10), progress=False):
        rows[t["name"]].update(int8_ms=t["median_ms"], int8_p90_ms=t["p90_ms"])
    costs = {"teacher": rows.pop("teacher"), "designs": rows}
    if path:
        write_json(path, {"key": key, "costs": costs})
    return costs


def sweep(cfg, out_dir, seeds=None, modes=None, shard=(0, 1), report_only=False, verbose=0):
    """Ablates every student of ``cfg.sweep`` and writes accuracy against cost per mode.

    Args:
        cfg: ``ExperimentConfig`` (``sweep`` section: the students).
        out_dir: Sweep folder: shared teacher, map stores and logit cache;
            ``students/<name>/`` per student; ``sweep.json``, ``sweep.md``, ``sweep.png``.
        seeds: Seeds (default ``cfg.student.seeds``).
        modes: Modes (default ``cfg.student.modes``).
        shard: ``(i, N)``: this worker runs every N-th unit of each student's ablation.
        report_only: Train nothing; report the finished units.
        verbose: Keras verbosity of the student runs.

    Returns:
        The report dict written to ``out_dir/sweep.json``: ``designs`` (costs),
        ``teacher``, ``modes``, ``rows`` (one per design and mode: accuracy
        mean, sd, CI, n and the costs), ``pareto`` (``{mode: {cost: [design, ...]}}``)
        and ``notes``.
    """
    from tfigkd.ablation import pareto
    from tfigkd.ablation.report import _clean
    from tfigkd.data import load_splits
    from tfigkd.experiments.ablate import ablate

    students = sweep_students(cfg.sweep)
    modes = list(cfg.student.modes if modes is None else modes)
    results = {}
    for i, (name, (builder, kwargs)) in enumerate(students.items(), 1):
        log.info("Sweep student %d/%d: %s", i, len(students), name)
        results[name] = ablate(student_config(cfg, builder, kwargs),
                               os.path.join(out_dir, SWEEP_DIR, name), seeds=seeds, modes=modes,
                               shard=shard, report_only=report_only, verbose=verbose,
                               shared_dir=out_dir)
    splits = load_splits(cfg.data)
    with folder_lock(out_dir, wait=True):
        costs = measure_costs(cfg, splits, students, runs=cfg.sweep.latency_runs,
                              path=os.path.join(out_dir, SWEEP_COSTS))
        rows = pareto.sweep_table(costs["designs"], modes, results)
        notes = [f"{name}: {r['units'] - r['finished']} of {r['units']} units not finished."
                 for name, r in results.items() if r["finished"] < r["units"]]
        report = {"designs": costs["designs"], "teacher": costs["teacher"], "modes": modes,
                  "seeds": sorted({u["seed"] for r in results.values() for u in r["runs"]}),
                  "rows": rows, "pareto": pareto.fronts(rows, modes), "notes": notes}
        write_json(os.path.join(out_dir, SWEEP_JSON), _clean(report))
        with atomic_path(os.path.join(out_dir, SWEEP_MD)) as tmp:
            with open(tmp, "w") as f:
                f.write(pareto.markdown(report) + "\n")
        if any(r["mean"] is not None for r in rows):
            pareto.plot(report, os.path.join(out_dir, SWEEP_PNG))
    return report
