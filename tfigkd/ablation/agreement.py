"""Does the student attend where the teacher does? Agreement of two sets of attribution maps.

The papers claim that IG-guided students are more explainable but never
measure it. Here each student's IG maps on validation images are compared
with the teacher's: Spearman rank correlation of the pixel values, and the
intersection over union of the top-k % pixels, averaged over images.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def spearman(a, b):
    """Mean over images of the Spearman correlation between two maps of each image.

    Args:
        a, b: (N, H, W) maps; image ``i`` of ``a`` is compared with image ``i`` of ``b``.

    Returns:
        The mean correlation (an image whose map is constant counts as 0).
    """
    a, b = _flat(a, b)
    rs = []
    for x, y in zip(a, b):
        if np.all(x == x[0]) or np.all(y == y[0]):
            rs.append(0.0)
            continue
        rs.append(float(stats.spearmanr(x, y).statistic))
    return float(np.mean(rs))


def topk_iou(a, b, k=0.1):
    """Mean over images of the IoU of the top ``k`` fraction of pixels of each map.

    Ties at the threshold are broken by position (stable sort), so exactly
    ``ceil(k * H * W)`` pixels are selected in each map.
    """
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    a, b = _flat(a, b)
    m = max(1, int(np.ceil(k * a.shape[1])))
    ious = []
    for x, y in zip(a, b):
        sx = set(np.argsort(-x, kind="stable")[:m])
        sy = set(np.argsort(-y, kind="stable")[:m])
        ious.append(len(sx & sy) / len(sx | sy))
    return float(np.mean(ious))


def _flat(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"map sets differ in shape: {a.shape} vs {b.shape}")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)
