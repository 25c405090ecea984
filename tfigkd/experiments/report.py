"""``report.md`` with a results table and PNG plots."""

from __future__ import annotations

import os

import numpy as np


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


def write_report(out_dir, summary, splits, maps, students, teacher_metrics, cfg):
    """Writes ``report.md`` and its plots into ``out_dir``."""
    plots = os.path.join(out_dir, "plots")
    os.makedirs(plots, exist_ok=True)
    plot_curves(os.path.join(plots, "curves.png"),
                [("teacher", teacher_metrics["history"])] + [(s["name"], s["history"]) for s in students])
    plot_modes(os.path.join(plots, "modes.png"), students, teacher_metrics["test_accuracy"])
    if maps is not None:
        plot_ig_grid(os.path.join(plots, "ig_grid.png"), splits, maps)
    t = summary["teacher"]
    lines = [f"# {cfg.name}: results", "",
             f"Data: {summary['dataset']}, sizes {summary['sizes']}, fingerprint "
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
    comp = summary["ig"]["completeness"]
    if comp:
        lines += ["", f"IG ({summary['ig']['settings']['method']}, {summary['ig']['settings']['n_steps']} "
                  f"steps): median relative completeness error {comp['median_rel_error']:.2%}, "
                  f"p90 {comp['p90_rel_error']:.2%}."]
    lines += ["", "![training curves](plots/curves.png)", "", "![accuracy per mode](plots/modes.png)"]
    if maps is not None:
        lines += ["", "![IG maps and overlays](plots/ig_grid.png)"]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
