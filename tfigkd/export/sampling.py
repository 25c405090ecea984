"""Which images an export calibrates and checks on: seeded samples and streamed blocks."""

from __future__ import annotations

import logging

import numpy as np

from tfigkd.data.lazy import is_lazy
from tfigkd.export.inputs import model_pixels, preprocess

log = logging.getLogger(__name__)

MEDIAPIPE_STREAMED_IMAGES = 2000
CHECK_BLOCK_BYTES = 64 << 20  # float32 model inputs per block when the test split is streamed


def check_subset(test, check_images=None):
    """The test images a secondary check (bench, compress, check-phone) runs on, in memory.

    The first ``check_images`` (None: all); a test split streamed from disk
    (data larger than memory) without a count gets its first
    ``MEDIAPIPE_STREAMED_IMAGES`` instead, which is logged. ``export_model``
    itself checks a streamed split completely, in blocks.
    """
    from tfigkd.data import Subset

    n = len(test) if check_images is None else min(int(check_images), len(test))
    if check_images is None and is_lazy(test.x) and n > MEDIAPIPE_STREAMED_IMAGES:
        log.info("The test split is streamed from disk: checking its first %d of %d images "
                 "(--check-images to change).", MEDIAPIPE_STREAMED_IMAGES, n)
        n = MEDIAPIPE_STREAMED_IMAGES
    sub = test.take(np.arange(n))
    return Subset(np.asarray(sub.x), sub.y, sub.index) if is_lazy(sub.x) else sub


def calibration_rows(splits, count, seed):
    """The training rows ``representative_images`` uses (same seeded sample)."""
    return np.sort(np.random.default_rng(seed).permutation(len(splits.train))[:count])


def representative_images(splits, input_norm, count, seed=0, size=None):
    """int8 calibration inputs: ``count`` training images (seeded sample, index order),
    resized to ``size`` (the model's (H, W); None: as they are) and preprocessed as the
    model expects."""
    pos = calibration_rows(splits, count, seed)
    return preprocess(model_pixels(splits.train.x[pos], size), input_norm, splits.mean,
                       splits.std)


def check_blocks(test, size, channels=None):
    """Position blocks of the test split for the export checks (one block unless streamed).

    ``channels``: of the largest input a block is turned into (3 for the RGB
    feed of an app-ready file of a grayscale model); default: the data's.
    """
    n = len(test)
    if not is_lazy(test.x):
        yield slice(0, n)
        return
    h, w = size or test.x.shape[1:3]
    c = max(int(test.x.shape[-1]), int(channels or 0))
    rows = max(1, CHECK_BLOCK_BYTES // (4 * int(h) * int(w) * c))
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))
