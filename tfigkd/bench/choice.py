"""Which student design ``tfigkd distill`` trains: measured on the target, chosen by one rule.

The rule (``choose_design``): among the registered designs whose int8 file
fits the target profile (ops, flash, and the TFLite Micro arena against RAM
for mcu), that are cheaper than the teacher (fewer MACs) and that meet the
budget (int8 LiteRT latency at batch 1 <= ``max_latency_ms``, int8 file <=
``max_size_kb``), take the one with the most multiply-adds: within a family
of well-designed small networks, more compute buys accuracy (the measured
table in the README: ``ds_cnn_l`` > ``ds_cnn_m`` > ``ds_cnn_s``). Ties go to
the faster file.

The measurement (``measured_designs``) is the ``tfigkd students`` table,
cached in the run folder per (input shape, classes, target profile, designs,
teacher file), so a resumed ``distill`` does not measure again.
"""

from __future__ import annotations

import logging
import os

from tfigkd.errors import UserError
from tfigkd.io import file_sha256, read_json, write_json

log = logging.getLogger(__name__)

RULE = ("the design with the most MACs among those that fit the target profile, are cheaper "
        "than the teacher (fewer MACs) and meet the budget (int8 LiteRT latency at batch 1, "
        "int8 file size); ties go to the faster one")


def _budget_text(max_latency_ms, max_size_kb):
    parts = []
    if max_latency_ms is not None:
        parts.append(f"int8 latency <= {max_latency_ms:g} ms")
    if max_size_kb is not None:
        parts.append(f"int8 size <= {max_size_kb:g} KB")
    return " and ".join(parts) or "no budget"


def judge(rows, max_latency_ms=None, max_size_kb=None):
    """Marks every design row with ``eligible`` (bool) and ``excluded`` (why not, or None).

    Args:
        rows: Measured rows, teacher first (``measure_designs``), each with
            ``fits``/``why`` from the target profile (``filter_rows``).
        max_latency_ms: int8 median latency budget (LiteRT, batch 1, 1 thread).
        max_size_kb: int8 file budget in KB (1,024 bytes).

    Returns:
        The same rows (teacher first), marked.
    """
    teacher = rows[0]
    for r in rows[1:]:
        why = None
        if not r.get("fits", True):
            why = f"does not fit the target: {r.get('why')}"
        elif r["macs"] >= teacher["macs"]:
            why = "not cheaper than the teacher (MACs)"
        elif max_latency_ms is not None and r["int8_ms"] > max_latency_ms:
            why = f"int8 latency {r['int8_ms']:.4f} ms > {max_latency_ms:g} ms"
        elif max_size_kb is not None and r["int8_bytes"] > max_size_kb * 1024:
            why = f"int8 size {r['int8_bytes'] / 1024:.1f} KB > {max_size_kb:g} KB"
        r["eligible"], r["excluded"] = why is None, why
    return rows


def choose_design(rows, max_latency_ms=None, max_size_kb=None, target=""):
    """The design the rule (``RULE``) picks from a measured table.

    Raises:
        UserError: One line naming the fastest design and its latency when no
            design meets the budget.
    """
    judge(rows, max_latency_ms, max_size_kb)
    designs = rows[1:]
    eligible = [r for r in designs if r["eligible"]]
    if eligible:
        return max(eligible, key=lambda r: (r["macs"], -r["int8_ms"]))
    if not designs:
        raise UserError("No student design was measured; name one with --design.")
    fastest = min(designs, key=lambda r: r["int8_ms"])
    raise UserError(
        f"No student design meets the budget ({_budget_text(max_latency_ms, max_size_kb)} on "
        f"{target or 'the target'}): the fastest, {fastest['name']}, takes "
        f"{fastest['int8_ms']:.4f} ms in int8 ({fastest['int8_bytes']:,} bytes"
        f"{'; ' + fastest['excluded'] if fastest.get('excluded') else ''}); raise "
        "--max-latency-ms / --max-size-kb, or pick a design with --design NAME.")


DESIGNS_JSON = "designs.json"


def cache_key(input_shape, num_classes, profile, teacher_path, designs=None, runs=300):
    """What a cached measurement depends on (``measured_designs`` re-measures when it changes)."""
    from tfigkd.models import PRESETS

    return {"input_shape": [int(v) for v in input_shape], "classes": int(num_classes),
            "profile": profile.target, "profile_sha256": file_sha256(profile.source),
            "designs": list(designs or PRESETS), "teacher_sha256": file_sha256(teacher_path),
            "runs": int(runs)}


def measured_designs(folder, input_shape, num_classes, profile, teacher_path, designs=None,
                     runs=300):
    """The ``tfigkd students`` rows for a target, measured once and cached in ``folder``.

    Args:
        folder: Where the ``.tflite`` files and ``designs.json`` go.
        input_shape: The student's (H, W, C).
        num_classes: Output classes.
        profile: A loaded ``TargetProfile``.
        teacher_path: The teacher ``.keras`` (timed as the first row).
        designs: Design names (default: every preset).
        runs: Timed invokes per file.

    Returns:
        Rows, teacher first, each with the profile's ``fits``/``why``.
    """
    from tfigkd.bench.students import filter_rows, measure_designs
    from tfigkd.models import load_model_file

    key = cache_key(input_shape, num_classes, profile, teacher_path, designs, runs)
    names = key["designs"]
    cache = os.path.join(folder, DESIGNS_JSON)
    if os.path.exists(cache):
        saved = read_json(cache)
        if saved.get("key") == key:
            log.info("Student designs already measured for %s at %s: %s", profile.target,
                     "x".join(map(str, input_shape)), cache)
            return saved["rows"]
    log.info("Measuring %d student designs and the teacher for %s (int8 size, TFLite Micro "
             "arena, LiteRT latency at batch 1, %d runs each) ...", len(names), profile.target,
             runs)
    teacher = load_model_file(teacher_path, "teacher")
    rows = measure_designs(tuple(input_shape), num_classes, names, runs=runs,
                           warmup=max(5, runs // 10), keep_dir=folder, teacher=teacher)
    filter_rows(rows, target=profile.source)  # marks fits/why; keeps every row here
    write_json(cache, {"key": key, "rows": rows})
    return rows
