"""``tfigkd bench``: honest LiteRT latency, side by side.

The authors timed one forward pass of one image with no warm-up (docs/method.md
section 8). Here every (model, batch, threads) case gets its own interpreter,
is warmed up, then timed in interleaved rounds, so all cases see the same
machine state; we report the median, p90 and spread of per-invoke times.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)


def _interpreter(path, batch, threads):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=threads)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(inp["dtype"], np.integer):
        info = np.iinfo(inp["dtype"])
        x = rng.integers(info.min, info.max + 1, size=inp["shape"]).astype(inp["dtype"])
    else:
        x = rng.random(inp["shape"]).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)
    return it


def benchmark_tflite(models, batches=(1, 64), threads=(1, None), runs=100, warmup=10,
                     rounds=10, progress=True):
    """Times every model at every batch size and thread count.

    Args:
        models: List of dicts with at least ``path`` and ``name``; other keys
            (``quant``, ``macs``, ``role``, ...) are copied into the rows.
        batches: Batch sizes (the input tensor is resized).
        threads: Interpreter thread counts; None means all cores.
        runs: Timed invokes per case (at least 100 for a report).
        warmup: Untimed invokes per case before timing.
        rounds: The timed invokes are split into this many interleaved rounds.

    Returns:
        One row per case: the model's keys plus ``batch``, ``threads``,
        ``bytes`` and per-invoke ``median_ms``, ``p90_ms``, ``min_ms``,
        ``max_ms``, ``iqr_ms``, ``runs`` and ``median_ms_per_image``.
    """
    threads = [t or os.cpu_count() for t in threads]
    cases = []
    for m in models:
        for b in batches:
            for t in dict.fromkeys(threads):
                cases.append({**m, "batch": int(b), "threads": int(t),
                              "bytes": os.path.getsize(m["path"])})
    its = []
    for c in cases:
        it = _interpreter(c["path"], c["batch"], c["threads"])
        for _ in range(warmup):
            it.invoke()
        its.append(it)
    times = [[] for _ in cases]
    per_round = max(1, -(-runs // rounds))
    for r in range(rounds):
        for k, it in enumerate(its):
            for _ in range(per_round):
                t0 = time.perf_counter()
                it.invoke()
                times[k].append(time.perf_counter() - t0)
        if progress:
            log.info("  round %d/%d done", r + 1, rounds)
    rows = []
    for c, ts in zip(cases, times):
        ms = np.array(ts) * 1e3
        q1, q3 = np.percentile(ms, [25, 75])
        rows.append({**c, "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                     "min_ms": float(ms.min()), "max_ms": float(ms.max()), "iqr_ms": float(q3 - q1),
                     "runs": int(len(ms)), "median_ms_per_image": float(np.median(ms) / c["batch"])})
    return rows


def speedups(rows, baseline_role="teacher"):
    """Median-latency ratio baseline/model for each (quant, batch, threads) case."""
    base = {(r.get("quant"), r["batch"], r["threads"]): r["median_ms"]
            for r in rows if r.get("role") == baseline_role}
    out = []
    for r in rows:
        key = (r.get("quant"), r["batch"], r["threads"])
        if r.get("role") != baseline_role and key in base:
            out.append({"name": r["name"], "quant": key[0], "batch": key[1], "threads": key[2],
                        "speedup_vs_teacher": base[key] / r["median_ms"],
                        "mac_ratio": (rows_by(rows, baseline_role, key).get("macs", 0) /
                                      r["macs"]) if r.get("macs") else None})
    return out


def rows_by(rows, role, key):
    for r in rows:
        if r.get("role") == role and (r.get("quant"), r["batch"], r["threads"]) == key:
            return r
    return {}


def plot_latency(rows, path):
    """Bar chart: median per-image latency for each case, p90 as the error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = sorted({(r["batch"], r["threads"]) for r in rows})
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 4), squeeze=False)
    for ax, (b, t) in zip(axes[0], settings):
        sel = [r for r in rows if (r["batch"], r["threads"]) == (b, t)]
        labels = [f"{r['name']}\n{r.get('quant', '')}" for r in sel]
        med = [r["median_ms"] / b for r in sel]
        err = [max(0.0, (r["p90_ms"] - r["median_ms"]) / b) for r in sel]
        colors = ["tab:red" if r.get("role") == "teacher" else "tab:blue" for r in sel]
        ax.bar(range(len(sel)), med, yerr=[np.zeros(len(sel)), err], color=colors, capsize=3)
        ax.set_xticks(range(len(sel)), labels, rotation=60, fontsize=7, ha="right")
        ax.set_title(f"batch {b}, {t} thread{'s' if t > 1 else ''}")
        ax.set_ylabel("ms per image (median, bar to p90)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def litert_benchmark(path, threads=1, runs=200, warmup=20, timeout=300):
    """Times ``path`` with the official ``litert-benchmark`` tool (from ``ai-edge-litert``).

    A cross-check of our interleaved timing by another harness: same file,
    batch 1, CPU. The tool rounds to 0.01 ms, so very small models report
    its resolution rather than their latency.

    Args:
        path: A ``.tflite`` file.
        threads: CPU threads.
        runs, warmup: Timed and untimed invokes.
        timeout: Seconds before giving up.

    Returns:
        ``{"median_ms", "avg_ms", "p95_ms", "min_ms", "init_ms", "runs"}``, or
        None when the tool is not installed (or fails; the reason is logged).
    """
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    exe = shutil.which("litert-benchmark") or os.path.join(os.path.dirname(sys.executable),
                                                           "litert-benchmark")
    if not os.path.exists(exe):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        try:
            proc = subprocess.run([exe, "--model", os.path.abspath(path), "--use_cpu",
                                   "--num_threads", str(threads), "--num_runs", str(runs),
                                   "--warmup_runs", str(warmup), "--result_json", out],
                                  capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            logging.getLogger(__name__).warning("litert-benchmark failed on %s: %s", path, e)
            return None
        if proc.returncode != 0 or not os.path.exists(out):
            logging.getLogger(__name__).warning("litert-benchmark failed on %s: %s", path,
                                                (proc.stderr or proc.stdout).strip()[-300:])
            return None
        with open(out) as f:
            lat = json.load(f)["latency"]
    return {"median_ms": lat["median_ms"], "avg_ms": lat["avg_ms"], "p95_ms": lat["p95_ms"],
            "min_ms": lat["min_ms"], "init_ms": lat["init_ms"], "runs": lat["num_runs"],
            "resolution_ms": 0.01}


def compare_with_litert_benchmark(ours_ms, theirs, tolerance=2.0):
    """Flags a disagreement between our median and ``litert-benchmark``'s.

    Returns:
        ``"agree"``, ``"below resolution"`` (their figure is within two steps
        of their 0.01 ms rounding), or ``"disagree"`` when the two medians differ by more
        than ``tolerance`` times.
    """
    if theirs is None:
        return None
    t = theirs["median_ms"]
    if t <= 2 * theirs["resolution_ms"]:
        return "below resolution"
    ratio = max(t, ours_ms) / max(min(t, ours_ms), 1e-9)
    return "agree" if ratio <= tolerance else "disagree"
