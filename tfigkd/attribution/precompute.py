"""The IG computation a store is filled with, and the settings it is keyed by.

The stage that fills a run folder's store (``tfigkd precompute-ig``) is
``tfigkd.experiments.attribution``.
"""

from __future__ import annotations

import logging

import numpy as np

from tfigkd.attribution.integrated_gradients import IntegratedGradients, ig_map
from tfigkd.attribution.store import IGSettings
from tfigkd.data import normalize

log = logging.getLogger(__name__)

def ig_settings(ig_cfg):
    """The ``IGSettings`` recorded in (and checked against) a store."""
    return IGSettings(n_steps=ig_cfg.n_steps, method=ig_cfg.method, baseline=ig_cfg.baseline,
                      output=ig_cfg.output, reduce=ig_cfg.reduce,
                      internal_batch_size=ig_cfg.internal_batch_size,
                      adaptive=ig_cfg.adaptive, start_steps=ig_cfg.start_steps,
                      rtol=ig_cfg.rtol, atol=ig_cfg.atol)


def make_compute_fn(teacher, ig_cfg, input_norm, mean, std, strategy=None):
    """``fn(x_uint8, labels) -> (maps, delta, rel_error)`` for ``write_store``.

    A teacher at another resolution than the data gets the images resized to
    its own; its maps are resized back to the data's (``teacher_io``).
    ``strategy``: local replicas the interpolation chunks are spread over
    (``tfigkd.distribute.inference_strategy``); the maps are the
    same up to float summation order.
    """
    from tfigkd.distribute import in_scope
    from tfigkd.models.teacher_io import affine, resize_images, resize_maps, teacher_size

    ig = IntegratedGradients(in_scope(teacher, strategy), ig_cfg.output, strategy)
    norm = None if input_norm == "unit" else affine(input_norm, mean, std,
                                                     teacher.input_shape[-1])
    size = teacher_size(teacher)

    def compute(x_uint8, labels):
        data_size = tuple(x_uint8.shape[1:3])
        x = normalize(resize_images(x_uint8, size), input_norm, mean, std).numpy()
        if ig_cfg.adaptive:
            attr, delta, _ = ig.attribute_adaptive(
                x, labels, baseline=ig_cfg.baseline, rtol=ig_cfg.rtol, atol=ig_cfg.atol,
                start_steps=min(ig_cfg.start_steps, ig_cfg.n_steps), max_steps=ig_cfg.n_steps,
                method=ig_cfg.method, internal_batch_size=ig_cfg.internal_batch_size, norm=norm)
        else:
            attr, delta = ig.attribute(x, labels, baseline=ig_cfg.baseline,
                                       n_steps=ig_cfg.n_steps, method=ig_cfg.method,
                                       return_delta=True, norm=norm,
                                       internal_batch_size=ig_cfg.internal_batch_size)
        # F(x) - F(x') = sum(IG) + delta, the scale the error is relative to.
        span = np.abs(attr.reshape(len(x), -1).sum(1) + delta)
        rel = np.abs(delta) / np.maximum(span, 1e-6)
        return resize_maps(ig_map(attr, ig_cfg.reduce), data_size), delta, rel

    return compute
