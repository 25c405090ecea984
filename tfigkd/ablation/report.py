"""The ablation report: ``ablation.json``, ``ablation.md`` and plots, from the finished units."""

from __future__ import annotations

import math
import os

import numpy as np

from tfigkd.ablation.stats import WILCOXON_MIN_N, describe, holm, paired_compare
from tfigkd.io import write_json, write_text
from tfigkd.layout import ABLATION_JSON, ABLATION_MD, ABLATION_PLOTS

METRICS = ("test_accuracy", "val_accuracy", "agreement_spearman", "agreement_iou")
BASELINES = ("student", "kd")


def _key(row):
    return (row["seed"], row["subset"])


def summarize(runs, resamples=9999):
    """Per-mode statistics and paired comparisons of every mode against each baseline.

    Args:
        runs: Rows with ``mode``, ``seed``, ``subset`` and the metrics.
        resamples: Bootstrap resamples.

    Returns:
        ``(modes, comparisons)``: ``modes[mode][metric]`` is ``describe(...)``;
        ``comparisons`` has one row per (a, b, metric) with ``n``,
        ``mean_diff``, ``ci_low``, ``ci_high``, ``t_p``, ``wilcoxon_p``,
        ``holm_p`` (Holm over all comparisons of that metric), ``cohen_d``,
        ``mde`` and ``warnings``. Pairs are matched on (seed, subset).
    """
    order = list(dict.fromkeys(r["mode"] for r in runs))
    by_mode = {m: {_key(r): r for r in runs if r["mode"] == m} for m in order}
    modes = {}
    for m in order:
        modes[m] = {}
        for metric in METRICS:
            vals = [r[metric] for r in by_mode[m].values() if r[metric] is not None]
            if vals:
                modes[m][metric] = describe(vals, seed=0, resamples=resamples)
    comparisons = []
    for metric in METRICS:
        family = []
        for base in BASELINES:
            if base not in by_mode:
                continue
            for m in order:
                if m == base or (base == "kd" and m == "student"):
                    continue
                keys = sorted(k for k in by_mode[m] if k in by_mode[base]
                              and by_mode[m][k][metric] is not None
                              and by_mode[base][k][metric] is not None)
                if not keys:
                    continue
                a = [by_mode[m][k][metric] for k in keys]
                b = [by_mode[base][k][metric] for k in keys]
                family.append({"a": m, "b": base, "metric": metric,
                               **paired_compare(a, b, seed=0, resamples=resamples)})
        for row, p in zip(family, holm([r["t_p"] for r in family])):
            row["holm_p"] = p
        comparisons += family
    return modes, comparisons


def write_report(out_dir, runs, units, cfg=None):
    """Writes the report of the finished ``runs`` (``units``: all that were asked for)."""
    resamples = cfg.ablation.bootstrap_resamples if cfg is not None else 9999
    done = {(r["mode"], r["seed"], r["subset"]) for r in runs}
    missing = [u for u in units if (u["mode"], u["seed"], u["subset"]) not in done]
    modes, comparisons = summarize(runs, resamples) if runs else ({}, [])
    n_pairs = max((c["n"] for c in comparisons), default=0)
    notes = []
    if missing:
        notes.append(f"{len(missing)} of {len(units)} units are not finished (e.g. "
                     f"{missing[0]['mode']} seed {missing[0]['seed']}); the statistics use the "
                     "finished ones.")
    if comparisons and n_pairs < WILCOXON_MIN_N:
        notes.append(f"Only {n_pairs} paired runs per comparison: the Wilcoxon test cannot reach "
                     f"p < 0.05 below {WILCOXON_MIN_N}, and every test here is low-powered.")
    report = {"units": len(units), "finished": len(runs), "missing": missing, "runs": runs,
              "modes": modes, "comparisons": comparisons, "notes": notes}
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, ABLATION_JSON), _clean(report))
    write_text(os.path.join(out_dir, ABLATION_MD), markdown(report) + "\n")
    if runs:
        plot(report, *(os.path.join(out_dir, name) for name in ABLATION_PLOTS))
    return report


def _clean(obj):
    """NaN -> None, so the JSON is standard."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _f(v, fmt="{:.4f}"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _p(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.2g}" if v < 0.001 else f"{v:.3f}"


def markdown(report):
    """Tables like the papers' (mean, sd, min, max) plus CIs and corrected paired tests."""
    lines = [f"# Ablation: {report['finished']} of {report['units']} units finished", ""]
    for n in report["notes"]:
        lines += [f"**Note:** {n}", ""]
    for metric in METRICS:
        rows = [(m, s[metric]) for m, s in report["modes"].items() if metric in s]
        if not rows:
            continue
        lines += [f"## {metric}", "", "| mode | n | mean | sd | min | max | 95 % CI of the mean |",
                  "|---|---|---|---|---|---|---|"]
        for m, d in rows:
            lines.append(f"| {m} | {d['n']} | {_f(d['mean'])} | {_f(d['sd'])} | {_f(d['min'])} | "
                         f"{_f(d['max'])} | [{_f(d['ci_low'])}, {_f(d['ci_high'])}] |")
        comps = [c for c in report["comparisons"] if c["metric"] == metric]
        if comps:
            lines += ["", "| a - b | n | mean diff | 95 % CI | t-test p | Wilcoxon p | Holm p | "
                      "Cohen's d | detectable (80 % power) |", "|---|---|---|---|---|---|---|---|---|"]
            for c in comps:
                lines.append(
                    f"| {c['a']} - {c['b']} | {c['n']} | {_f(c['mean_diff'], '{:+.4f}')} | "
                    f"[{_f(c['ci_low'], '{:+.4f}')}, {_f(c['ci_high'], '{:+.4f}')}] | "
                    f"{_p(c['t_p'])} | {_p(c['wilcoxon_p'])} | {_p(c.get('holm_p'))} | "
                    f"{_f(c['cohen_d'], '{:+.2f}')} | {_f(c['mde'])} |")
        lines.append("")
    lines += ["Paired on (seed, subset): the modes of a seed share the student's initialisation, "
              "data order and augmentation. Holm corrects the t-test p-values over all "
              "comparisons of a metric. 'Detectable' is the difference a paired t-test finds "
              "with 80 % power at alpha 0.05 given the observed spread of the differences."]
    return "\n".join(lines)


def plot(report, acc_path, diff_path):
    """Per-mode strip plot of test accuracy; paired differences vs each baseline with CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report["modes"])
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(modes)), 4))
    rng = np.random.default_rng(0)
    for i, m in enumerate(modes):
        vals = [r["test_accuracy"] for r in report["runs"] if r["mode"] == m]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=14, alpha=0.7)
        d = report["modes"][m]["test_accuracy"]
        ax.errorbar(i + 0.3, d["mean"], yerr=[[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]],
                    fmt="k_", capsize=4)
    ax.set_xticks(range(len(modes)), modes, rotation=30)
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy per mode (points: runs; bar: mean and 95 % CI)")
    fig.tight_layout()
    fig.savefig(acc_path, dpi=120)
    plt.close(fig)
    comps = [c for c in report["comparisons"] if c["metric"] == "test_accuracy"]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.45 * len(comps) + 1)))
    for i, c in enumerate(comps):
        ax.errorbar(c["mean_diff"], i, xerr=[[c["mean_diff"] - c["ci_low"]],
                                            [c["ci_high"] - c["mean_diff"]]], fmt="o", capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(comps)), [f"{c['a']} - {c['b']} (Holm p {_p(c.get('holm_p'))})"
                                      for c in comps])
    ax.set_xlabel("paired difference in test accuracy (mean, 95 % CI)")
    fig.tight_layout()
    fig.savefig(diff_path, dpi=120)
    plt.close(fig)
