"""IG baselines: the reference input the path integral starts from.

Its own module so that both IG rules (``integrated_gradients`` and the nested
``nested_ig``) use it without importing each other.
"""

from __future__ import annotations

import numpy as np

from tfigkd.errors import UserError

BASELINES = ("zeros", "black", "blur", "uniform")


def check_inputs(images, targets):
    """(float32 images (B, H, W, C), int64 targets (B,)), or a UserError naming the mismatch.

    The input check of both IG rules (``integrated_gradients``, ``nested_ig``).
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise UserError(f"images must be (B, H, W, C), got shape {x.shape}.")
    targets = np.asarray(targets, np.int64).reshape(-1)
    if len(targets) != len(x):
        raise UserError(f"{len(x)} images but {len(targets)} targets.")
    return x, targets


def make_baseline(images, baseline, norm=None, seed=0, blur_sigma=None):
    """Resolves a baseline spec to an array shaped like ``images``.

    Args:
        images: (B, H, W, C) model inputs.
        baseline: None or "zeros" (zeros in the model's input space: with a
            mean/std normalisation, the dataset's mean colour), "black" (a
            black image, i.e. raw pixel 0 mapped through ``norm``), "blur" (a
            Gaussian blur of each image), "uniform" (raw uniform noise mapped
            through ``norm``, seeded), or an array broadcastable to ``images``.
        norm: ``(mean, std)`` of the model's input normalisation, if any;
            needed to place "black" and "uniform" in model space.
        seed: Seed for "uniform".
        blur_sigma: Gaussian sigma for "blur" (default: H / 8).

    Returns:
        A float32 NumPy array with the shape of ``images``.
    """
    images = np.asarray(images, np.float32)
    mean, std = (np.zeros(1), np.ones(1)) if norm is None else (np.asarray(norm[0]), np.asarray(norm[1]))
    if baseline is None or (isinstance(baseline, str) and baseline == "zeros"):
        return np.zeros_like(images)
    if isinstance(baseline, str):
        if baseline == "black":
            return np.broadcast_to(((0.0 - mean) / std).astype(np.float32), images.shape).copy()
        if baseline == "uniform":
            raw = np.random.default_rng(seed).uniform(0, 1, images.shape)
            return ((raw - mean) / std).astype(np.float32)
        if baseline == "blur":
            from scipy.ndimage import gaussian_filter

            sigma = blur_sigma or images.shape[1] / 8.0
            return gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="nearest").astype(np.float32)
        raise UserError(f"Unknown baseline {baseline!r}; use one of {', '.join(BASELINES)} "
                        "or pass an array.")
    arr = np.asarray(baseline, np.float32)
    try:
        return np.broadcast_to(arr, images.shape).copy()
    except ValueError:
        raise UserError(f"Baseline of shape {arr.shape} does not broadcast to the "
                        f"images' shape {images.shape}.") from None
