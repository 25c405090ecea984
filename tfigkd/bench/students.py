"""``tfigkd students``: what each registered design costs, measured, before training any.

For an input shape and class count, every design (the shipped presets, or
the ones named) is built with random weights, converted to fp32 and int8
``.tflite``, and timed in LiteRT at batch 1 on 1 thread in one interleaved
run together with the teacher, so the speed-ups are side by side. Weights do
not change the cost of a dense network, so no training is needed. TFLite
Micro's smallest arena is measured when ``tflite-micro`` is installed.
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np


log = logging.getLogger(__name__)

TEACHER = ("mobilenet_v2_cifar", {"dropout": 0.2})


def _designs(names):
    from tfigkd.models import PRESETS, resolve_design

    if not names:
        return dict(PRESETS)
    return {n: resolve_design(n) for n in names}


def student_table(input_shape, num_classes, designs=None, target=None, max_macs=None,
                  max_latency_ms=None, runs=300, warmup=30, micro=True, keep_dir=None,
                  progress=False):
    """Measures every design against the teacher and keeps those that pass the filters.

    Args:
        input_shape: (H, W, C).
        num_classes: Output classes.
        designs: Preset or registered model names (default: every preset).
        target: "mcu", "coral", "phone", a profile path, or None: keep only
            designs whose int8 file passes that profile's checks (ops, flash)
            and, for mcu, whose arena fits its RAM.
        max_macs: Keep designs with at most this many multiply-adds.
        max_latency_ms: Keep designs whose int8 median latency is at most this.
        runs, warmup: Timed and untimed invokes per file.
        micro: Measure the TFLite Micro arena (if ``tflite-micro`` is installed).
        keep_dir: Keep the ``.tflite`` files there (default: a temporary folder).
        progress: Log each timing round.

    Returns:
        Rows (teacher first), see ``measure_designs``, filtered by ``filter_rows``.
    """
    rows = measure_designs(input_shape, num_classes, designs, runs=runs, warmup=warmup,
                           micro=micro, keep_dir=keep_dir, progress=progress)
    return filter_rows(rows, target=target, max_macs=max_macs, max_latency_ms=max_latency_ms)


def measure_designs(input_shape, num_classes, designs=None, runs=300, warmup=30, micro=True,
                    keep_dir=None, progress=False, teacher=None):
    """Builds, converts and times every design and the teacher in one interleaved run.

    ``teacher``: a ``keras.Model`` to time as the teacher row (at its own
    input size; ``tfigkd distill`` passes the user's teacher), or None for the
    reference MobileNetV2 (``TEACHER``).

    Returns:
        Rows (teacher first), each with ``name``, ``model``, ``kwargs``,
        ``params``, ``macs``, ``int8_bytes``, ``int8_path``, ``arena_bytes``,
        ``fp32_ms``, ``int8_ms`` (medians), ``fp32_p90_ms``, ``int8_p90_ms``,
        ``speedup_fp32`` (teacher fp32 / design fp32), ``speedup_int8``
        (teacher int8 / design int8) and ``speedup_int8_vs_teacher_fp32``.
    """
    from tfigkd.bench.latency import benchmark_tflite
    from tfigkd.export.tflite import convert
    from tfigkd.models import build_model, count_macs, trainable_params

    import keras

    todo = {"teacher": TEACHER if teacher is None else teacher, **_designs(designs)}
    folder = keep_dir or tempfile.mkdtemp(prefix="tfigkd-students-")
    os.makedirs(folder, exist_ok=True)
    rows, files = [], []
    for name, spec in todo.items():
        keras.utils.set_random_seed(0)
        if isinstance(spec, keras.Model):
            model, builder, kwargs = spec, spec.name, {}
        else:
            builder, kwargs = spec
            model = build_model(builder, input_shape, num_classes, **kwargs)
        # Random calibration images at the model's own size (a teacher may take another).
        calib = np.random.default_rng(0).random((32, *model.input_shape[1:])).astype(np.float32)
        row = {"name": name, "model": builder, "kwargs": dict(kwargs),
               "role": "teacher" if name == "teacher" else "student",
               "params": trainable_params(model), "macs": count_macs(model)}
        for quant in ("fp32", "int8"):
            data = convert(model, quant, calib if quant == "int8" else None)
            path = os.path.join(folder, f"{name}_{quant}.tflite")
            with open(path, "wb") as f:
                f.write(data)
            files.append({"path": path, "name": name, "quant": quant})
        row.update(int8_bytes=len(data), int8_path=path, arena_bytes=_arena(data, micro))
        rows.append(row)
        keras.backend.clear_session()
    timed = benchmark_tflite(files, batches=(1,), threads=(1,), runs=runs, warmup=warmup,
                             progress=progress)
    by = {(t["name"], t["quant"]): t for t in timed}
    for row in rows:
        for quant in ("fp32", "int8"):
            t = by[(row["name"], quant)]
            row[f"{quant}_ms"], row[f"{quant}_p90_ms"] = t["median_ms"], t["p90_ms"]
    teacher = rows[0]
    for row in rows:
        row["speedup_fp32"] = teacher["fp32_ms"] / row["fp32_ms"]
        row["speedup_int8"] = teacher["int8_ms"] / row["int8_ms"]
        row["speedup_int8_vs_teacher_fp32"] = teacher["fp32_ms"] / row["int8_ms"]
    return rows


def filter_rows(rows, target=None, max_macs=None, max_latency_ms=None):
    """Keeps the teacher row and the designs within the budgets.

    With a ``target``, every row gets ``fits`` (bool) and ``why`` (the first
    reason it does not fit, else None).
    """
    from tfigkd.export.targets import load_profile

    profile = load_profile(target) if target else None
    keep = [rows[0]]
    for row in rows:
        if profile is not None:
            row["fits"], row["why"] = _fits(profile, row)
        if row is rows[0]:
            continue
        if max_macs is not None and row["macs"] > max_macs:
            continue
        if max_latency_ms is not None and row["int8_ms"] > max_latency_ms:
            continue
        if profile is not None and not row["fits"]:
            continue
        keep.append(row)
    return keep


def _arena(data, micro):
    if not micro:
        return None
    try:
        from tfigkd.export.micro import smallest_arena
    except ImportError:
        return None
    try:
        return smallest_arena(data)
    except Exception as e:  # noqa: BLE001 - an unsupported op: report, do not abort the table
        log.warning("TFLite Micro arena not measured: %s", str(e).splitlines()[0][:200])
        return None


def _fits(profile, row):
    from tfigkd.export.flatbuffer import io_details, model_ops
    from tfigkd.export.targets import TargetCheckError, check_ram, check_static

    with open(row["int8_path"], "rb") as f:
        data = f.read()
    try:
        check_static(profile, model_ops(data), io_details(data), len(data))
        if profile.target == "mcu":
            if row["arena_bytes"] is None:
                return False, "arena not measured (install tflite-micro)"
            check_ram(profile, row["arena_bytes"])
    except TargetCheckError as e:
        return False, str(e).splitlines()[-1].lstrip("- ")
    return True, None


def format_table(rows):
    """A markdown table of ``student_table`` rows."""
    head = ("| design | params | MACs | int8 bytes | TFLM arena | fp32 ms | int8 ms | "
            "speed-up fp32 | speed-up int8 | int8 vs teacher fp32 |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        arena = f"{r['arena_bytes']:,}" if r.get("arena_bytes") else "-"
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['macs'] / 1e6:.2f} M | {r['int8_bytes']:,} | "
            f"{arena} | {r['fp32_ms']:.3f} | {r['int8_ms']:.3f} | {r['speedup_fp32']:.1f}x | "
            f"{r['speedup_int8']:.1f}x | {r['speedup_int8_vs_teacher_fp32']:.1f}x |")
    return "\n".join(lines)
