"""``report.md`` with a results table and PNG plots."""

from __future__ import annotations

import os

import numpy as np

from tfigkd.io import write_text
from tfigkd.layout import CURVES_PNG, IG_GRID_PNG, MODES_PNG, PLOTS_DIR, REPORT_MD


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path, runs):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, hist in runs:
        axes[0].plot(hist.get("loss", []), label=name)
        axes[1].plot(hist.get("val_accuracy", []), label=name)
    axes[0].set_title("training loss"); axes[1].set_title("validation accuracy")
    for a in axes:
        a.set_xlabel("epoch"); a.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def plot_ig_grid(path, splits, maps, n=6, p_weight=0.5):
    plt = _plt()
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5))
    for j in range(min(n, len(maps))):
        img = splits.train.x[j].astype(np.float32) / 255.0
        m = maps[j].astype(np.float32)
        m = (m - m.min()) / max(m.max() - m.min(), 1e-12)
        over = (1 - p_weight) * img + p_weight * m[..., None]
        for i, (im, title) in enumerate([(img, f"#{splits.train.index[j]}"), (m, "IG map"), (over, "overlay")]):
            ax = axes[i, j]
            ax.imshow(im.squeeze(), cmap="gray" if im.ndim == 2 or im.shape[-1] == 1 else None)
            ax.set_title(title, fontsize=7); ax.axis("off")
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def plot_modes(path, students, teacher_acc):
    plt = _plt()
    modes = sorted({s["mode"] for s in students}, key=[s["mode"] for s in students].index)
    means = [np.mean([s["test_accuracy"] for s in students if s["mode"] == m]) for m in modes]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(modes, means, color="tab:blue")
    ax.axhline(teacher_acc, color="tab:red", ls="--", label=f"teacher {teacher_acc:.3f}")
    lo = min(means + [teacher_acc])
    ax.set_ylim(max(0, lo - 0.05), 1.0); ax.set_ylabel("test accuracy"); ax.legend()
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def write_report(out_dir, summary, splits, maps, students, teacher_metrics, cfg, extra=None):
    """Writes ``report.md`` and its plots into ``out_dir``.

    ``maps``: the IG maps, or ``{source: maps}`` when the modes overlay
    several sources (the grid shows the IG ones). ``extra``: Markdown lines
    appended at the end (the evaluation, ``tfigkd.evaluation``).
    """
    if isinstance(maps, dict):
        maps = maps.get("ig")
    plots = os.path.join(out_dir, PLOTS_DIR)
    os.makedirs(plots, exist_ok=True)
    plot_curves(os.path.join(plots, CURVES_PNG),
                [("teacher", teacher_metrics["history"])] + [(s["name"], s["history"]) for s in students])
    plot_modes(os.path.join(plots, MODES_PNG), students, teacher_metrics["test_accuracy"])
    if maps is not None:
        plot_ig_grid(os.path.join(plots, IG_GRID_PNG), splits, maps)
    t = summary["teacher"]
    lines = [f"# {cfg.name}: results", ""]
    for w in summary.get("warnings") or []:
        lines += [f"**Warning: {w}**", ""]
    lines += [f"Data: {summary['dataset']}, sizes {summary['sizes']}, fingerprint "
             f"`{summary['fingerprint'][:16]}`. tfigkd {summary['tfigkd_version']}.", "",
             "| model | mode | seed | params | MACs | val acc | test acc | train s |",
             "|---|---|---|---|---|---|---|---|",
             f"| teacher ({t['model']}) | - | - | {t['trainable_params']:,} | {t['macs']:,} | "
             f"{t['val_accuracy']:.4f} | {t['test_accuracy']:.4f} | {t['train_seconds']:.0f} |"]
    for s in students:
        lines.append(f"| {s['name']} | {s['mode']} | {s['seed']} | {s['trainable_params']:,} | "
                     f"{s['macs']:,} | {s['val_accuracy']:.4f} | {s['test_accuracy']:.4f} | "
                     f"{s['train_seconds']:.0f} |")
    lines += ["", f"Best student on validation: **{summary['best_student']}** "
              "(chosen on validation accuracy; test accuracy reported once)."]
    if summary["int8"]:
        e = summary["int8"]
        lines += ["", f"int8 TFLite: `{os.path.basename(e['path'])}`, {e['bytes']:,} bytes, "
                  f"test accuracy {e['test_accuracy']:.4f} in LiteRT (Keras "
                  f"{e['keras_test_accuracy']:.4f}, agreement {e['agreement_with_keras']:.2%})."]
    lines += _statistics_lines(summary.get("statistics"))
    lines += _deploy_lines(summary.get("deploy"))
    comp = summary["ig"]["completeness"]
    if comp:
        lines += ["", f"IG ({summary['ig']['settings']['method']}, {summary['ig']['settings']['n_steps']} "
                  f"steps): median relative completeness error {comp['median_rel_error']:.2%}, "
                  f"p90 {comp['p90_rel_error']:.2%}."]
    lines += ["", f"![training curves]({PLOTS_DIR}/{CURVES_PNG})", "",
              f"![accuracy per mode]({PLOTS_DIR}/{MODES_PNG})"]
    if maps is not None:
        lines += ["", f"![IG maps and overlays]({PLOTS_DIR}/{IG_GRID_PNG})"]
    lines += list(extra or [])
    write_text(os.path.join(out_dir, REPORT_MD), "\n".join(lines) + "\n")


def _num(v, fmt="{:.4f}"):
    return "-" if v is None else fmt.format(v)


def _statistics_lines(st):
    """Mean ± sd per mode over seeds and paired tests against ``student``."""
    if not st:
        return []
    lines = ["", "## Modes over seeds", "",
             "| mode | n | test acc mean ± sd | min | max | vs student: diff [95 % CI] | "
             "t p | Wilcoxon p | Holm p |", "|---|---|---|---|---|---|---|---|---|"]
    comps = {c["a"]: c for c in st["comparisons"]
             if c["metric"] == "test_accuracy" and c["b"] == "student"}
    for mode, m in st["modes"].items():
        t = m.get("test_accuracy")
        if not t:
            continue
        c = comps.get(mode)
        vs = (f"{c['mean_diff']:+.4f} [{_num(c['ci_low'], '{:+.4f}')}, "
              f"{_num(c['ci_high'], '{:+.4f}')}]" if c else "-")
        lines.append(f"| {mode} | {t['n']} | {t['mean']:.4f} ± {_num(t['sd'])} | "
                     f"{t['min']:.4f} | {t['max']:.4f} | {vs} | "
                     f"{_num(c and c.get('t_p'), '{:.3g}')} | "
                     f"{_num(c and c.get('wilcoxon_p'), '{:.3g}')} | "
                     f"{_num(c and c.get('holm_p'), '{:.3g}')} |")
    n = max((t["test_accuracy"]["n"] for t in st["modes"].values() if "test_accuracy" in t),
            default=0)
    lines += ["", f"Paired by seed (same initialisation, data order and augmentation). With "
              f"n = {n} seeds these tests are **low-powered**: an exact Wilcoxon test cannot "
              "reach p < 0.05 below 6 pairs, and only differences of several seed standard "
              "deviations can show. `tfigkd ablate` runs the same comparison with more seeds."]
    return lines


def _deploy_lines(dep):
    """The int8 files per target with their interpreter checks, and the latency table."""
    if not dep:
        return []
    lines = ["", "## Deployment (best student, int8)", "",
             "| target | file | bytes | LiteRT acc | TFLite Micro acc (images) | arena | "
             "MediaPipe loads |", "|---|---|---|---|---|---|---|"]
    for target, r in dep["targets"].items():
        tflm = (f"{r['tflm_accuracy']:.4f} ({r['tflm_images']})" if "tflm_accuracy" in r else "-")
        arena = f"{r['arena_bytes']:,}" if "arena_bytes" in r else "-"
        lines.append(f"| {target} | `{os.path.basename(r['path'])}` | {r['bytes']:,} | "
                     f"{r['litert_accuracy']:.4f} | {tflm} | {arena} | "
                     f"{r.get('mediapipe_loads', '-')} |")
    lat = dep.get("latency")
    if lat:
        lines += ["", f"Latency ({lat['setting']}):", "",
                  "| model | bytes | median ms | p90 ms | IQR ms | runs |", "|---|---|---|---|---|---|"]
        for r in lat["rows"]:
            lines.append(f"| {r['name']} | {r['bytes']:,} | {r['median_ms']:.4f} | "
                         f"{r['p90_ms']:.4f} | {r['iqr_ms']:.4f} | {r['runs']} |")
        lines += ["", f"Student int8 speed-up: **{lat['speedup_vs_teacher_fp32']:.1f}x** vs the "
                  f"fp32 teacher, **{lat['speedup_vs_teacher_int8']:.1f}x** vs the int8 teacher."]
    return lines
