"""PNG figures of the evaluation: confusion matrices and captioned image grids."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(name, n=14):
    return name if len(name) <= n else name[:n - 1] + "…"


def confusion_png(path, matrices, class_names):
    """Side-by-side confusion matrices, row-normalised colours with the counts written in.

    Args:
        path: The PNG to write.
        matrices: ``[(title, cm), ...]`` (``cm[true, predicted]`` counts).
        class_names: Names in class order.
    """
    plt = _plt()
    k = len(class_names)
    cell = 0.45 if k <= 12 else 0.25
    side = max(3.0, 1.2 + cell * k)
    fig, axes = plt.subplots(1, len(matrices), figsize=(side * len(matrices), side + 0.4),
                             squeeze=False)
    labels = [_short(n) for n in class_names]
    for ax, (title, cm) in zip(axes[0], matrices):
        cm = np.asarray(cm, np.float64)
        rows = cm.sum(1, keepdims=True)
        frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                                color="white" if frac[i, j] > 0.5 else "black")
            ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(k), labels, fontsize=7)
        ax.set_xlabel("predicted"); ax.set_ylabel("true"); ax.set_title(title, fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def image_grid_png(path, images, captions, title=None, ncols=6):
    """A grid of uint8 images (H, W, C) with a caption under each.

    Returns:
        True if a file was written (False when there is nothing to show).
    """
    if len(images) == 0:
        return False
    plt = _plt()
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.9 * nrows + (0.3 if title else 0)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, captions):
        img = np.asarray(img)
        gray = img.ndim == 2 or img.shape[-1] == 1
        ax.imshow(img.squeeze() if gray else img, cmap="gray" if gray else None, vmin=0, vmax=255)
        ax.set_title(cap, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)
    return True
