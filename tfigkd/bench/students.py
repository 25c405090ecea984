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

from tfigkd.errors import UserError

log = logging.getLogger(__name__)

TEACHER = ("mobilenet_v2_cifar", {"dropout": 0.2})


def _designs(names):
    from tfigkd.models import PRESETS, available_models

    if not names:
        return dict(PRESETS)
    out = {}
    for n in names:
        if n in PRESETS:
            out[n] = PRESETS[n]
        elif n in available_models():
            out[n] = (n, {})
        else:
            raise UserError(f"Unknown design {n!r}: use a preset ({', '.join(PRESETS)}) or a "
                            f"registered model ({', '.join(available_models())}).")
    return out


def student_table(input_shape, num_classes, designs=None, target=None, max_macs=None,
                  max_latency_ms=None, runs=300, warmup=30, micro=True, keep_dir=None,
                  progress=False):
    """Measures every design against the teacher.

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
        Rows (teacher first), each with ``name``, ``model``, ``kwargs``,
        ``params``, ``macs``, ``int8_bytes``, ``arena_bytes``, ``fp32_ms``,
        ``int8_ms`` (medians), ``fp32_p90_ms``, ``int8_p90_ms``,
        ``speedup_fp32`` (teacher fp32 / design fp32), ``speedup_int8``
        (teacher int8 / design int8), ``speedup_int8_vs_teacher_fp32``, and
        ``fits`` (None without a target, else True/False with ``why``).
    """
    from tfigkd.bench.latency import benchmark_tflite
    from tfigkd.export.flatbuffer import io_details, model_ops
    from tfigkd.export.targets import TargetCheckError, check_ram, check_static, load_profile
    from tfigkd.export.tflite import convert
    from tfigkd.models import build_model, count_macs, trainable_params

    import keras

    profile = load_profile(target) if target else None
    todo = {"teacher": TEACHER, **_designs(designs)}
    rng = np.random.default_rng(0)
    calib = rng.random((32, *input_shape)).astype(np.float32)
    folder = keep_dir or tempfile.mkdtemp(prefix="tfigkd-students-")
    os.makedirs(folder, exist_ok=True)
    rows, files = [], []
    for name, (builder, kwargs) in todo.items():
        keras.utils.set_random_seed(0)
        model = build_model(builder, input_shape, num_classes, **kwargs)
        row = {"name": name, "model": builder, "kwargs": dict(kwargs),
               "role": "teacher" if name == "teacher" else "student",
               "params": trainable_params(model), "macs": count_macs(model)}
        for quant in ("fp32", "int8"):
            data = convert(model, quant, calib if quant == "int8" else None)
            path = os.path.join(folder, f"{name}_{quant}.tflite")
            with open(path, "wb") as f:
                f.write(data)
            files.append({"path": path, "name": name, "quant": quant})
            if quant == "int8":
                row["int8_bytes"] = len(data)
                row["arena_bytes"] = _arena(data, micro)
                row["fits"], row["why"] = _fits(profile, data, row["arena_bytes"],
                                                model_ops, io_details, check_static, check_ram,
                                                TargetCheckError)
        rows.append(row)
        keras.backend.clear_session()
    timed = benchmark_tflite(files, batches=(1,), threads=(1,), runs=runs, warmup=warmup,
                             progress=progress)
    by = {(t["name"], t["quant"]): t for t in timed}
    teacher = rows[0]
    for row in rows:
        for quant in ("fp32", "int8"):
            t = by[(row["name"], quant)]
            row[f"{quant}_ms"], row[f"{quant}_p90_ms"] = t["median_ms"], t["p90_ms"]
    for row in rows:
        row["speedup_fp32"] = teacher["fp32_ms"] / row["fp32_ms"]
        row["speedup_int8"] = teacher["int8_ms"] / row["int8_ms"]
        row["speedup_int8_vs_teacher_fp32"] = teacher["fp32_ms"] / row["int8_ms"]
    keep = [rows[0]]
    for row in rows[1:]:
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


def _fits(profile, data, arena, model_ops, io_details, check_static, check_ram, error):
    if profile is None:
        return None, None
    try:
        check_static(profile, model_ops(data), io_details(data), len(data))
        if profile.target == "mcu":
            if arena is None:
                return False, "arena not measured (install tflite-micro)"
            check_ram(profile, arena)
    except error as e:
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
