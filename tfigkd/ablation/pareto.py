"""Accuracy against cost over students: Pareto fronts, the sweep's markdown and plot."""

from __future__ import annotations

import math

COSTS = (("params", "parameters"), ("macs", "MACs"), ("int8_ms", "int8 latency (ms)"))


def pareto_front(points):
    """Names of the points no other point beats (cost <= and accuracy >=, one strictly).

    Args:
        points: ``[(name, cost, accuracy), ...]``; points with a None or NaN
            value are left out.

    Returns:
        The front's names, cheapest first.
    """
    pts = [(n, c, a) for n, c, a in points
           if c is not None and a is not None and not math.isnan(c) and not math.isnan(a)]
    front = [p for p in pts
             if not any(q[1] <= p[1] and q[2] >= p[2] and (q[1] < p[1] or q[2] > p[2]) for q in pts)]
    return [n for n, _, _ in sorted(front, key=lambda p: (p[1], -p[2]))]


def sweep_table(designs, modes, results):
    """One row per (design, mode): test accuracy ``n, mean, sd, ci_low, ci_high`` and the costs.

    Args:
        designs: ``{name: cost row}`` (``params``, ``macs``, ``int8_ms``, ...).
        modes: Modes, in report order.
        results: ``{name: ablation report}`` (``report["modes"][mode]["test_accuracy"]``).
    """
    rows = []
    for name, cost in designs.items():
        stats = results.get(name, {}).get("modes", {})
        for mode in modes:
            d = stats.get(mode, {}).get("test_accuracy")
            rows.append({"design": name, "mode": mode, "model": cost["model"],
                         "kwargs": cost["kwargs"], "n": d["n"] if d else 0,
                         **{k: (d[k] if d else None) for k in ("mean", "sd", "ci_low", "ci_high")},
                         **{k: cost[k] for k, _ in COSTS}})
    return rows


def fronts(rows, modes):
    """``{mode: {cost: [design, ...]}}``: each mode's Pareto front on each cost axis."""
    return {m: {k: pareto_front([(r["design"], r[k], r["mean"]) for r in rows if r["mode"] == m])
                for k, _ in COSTS} for m in modes}


def _f(v, fmt):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def markdown(report):
    """Accuracy per design and mode with the costs; Pareto-optimal cells marked."""
    rows, modes, front = report["rows"], report["modes"], report["pareto"]
    lines = [f"# Sweep: {len(report['designs'])} students x {len(modes)} modes", ""]
    for n in report["notes"]:
        lines += [f"**Note:** {n}", ""]
    t = report.get("teacher")
    if t:
        lines += [f"Teacher: {t['params']:,} parameters, {t['macs'] / 1e6:.2f} M MACs, "
                  f"int8 {t['int8_ms']:.3f} ms.", ""]
    lines += ["| design | params | MACs | int8 ms | " + " | ".join(modes) + " |",
              "|---|---|---|---|" + "---|" * len(modes)]
    for name, cost in report["designs"].items():
        cells = []
        for m in modes:
            r = next(r for r in rows if r["design"] == name and r["mode"] == m)
            mark = "".join(s for (k, _), s in zip(COSTS, "PML") if name in front[m][k])
            cells.append(f"{_f(r['mean'], '{:.4f}')} ± {_f(r['sd'], '{:.4f}')} (n={r['n']})"
                         + (f" **{mark}**" if mark else ""))
        lines.append(f"| {name} | {cost['params']:,} | {cost['macs'] / 1e6:.2f} M | "
                     f"{_f(cost['int8_ms'], '{:.3f}')} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean ± sd of test accuracy over the finished seeds (n). **P**, **M**, "
              "**L**: on that mode's Pareto front of accuracy against parameters, MACs or int8 "
              "latency (no other student is as cheap and at least as accurate). Latency: LiteRT, "
              "int8, batch 1, 1 thread, median, measured in one interleaved run.",
              "", "Each student's paired statistics are in its own folder's ablation.md."]
    return "\n".join(lines)


def plot(report, path):
    """Accuracy (mean, 95 % CI) against each cost, one series per mode, fronts as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes, rows = report["modes"], report["rows"]
    fig, axes = plt.subplots(1, len(COSTS), figsize=(5 * len(COSTS), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], COSTS):
        for i, m in enumerate(modes):
            pts = [r for r in rows if r["mode"] == m and r["mean"] is not None
                   and r[key] is not None]
            color = f"C{i}"
            for r in pts:
                lo, hi = r["ci_low"], r["ci_high"]
                ax.errorbar(r[key], r["mean"], yerr=[[r["mean"] - lo], [hi - r["mean"]]],
                            fmt="o", color=color, capsize=3, ms=5)
            on = [r for name in report["pareto"][m][key] for r in pts if r["design"] == name]
            ax.plot([r[key] for r in on], [r["mean"] for r in on], "-", color=color, label=m)
        for r in rows:
            if r["mode"] == modes[0] and r["mean"] is not None and r[key] is not None:
                ax.annotate(r["design"], (r[key], r["mean"]), fontsize=7,
                            textcoords="offset points", xytext=(4, -10))
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Accuracy vs cost per mode (lines: Pareto fronts; bars: 95 % CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
