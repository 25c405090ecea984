"""The IG computation a store is filled with, and the settings it is keyed by.

The stage that fills a run folder's store (``tfigkd precompute-ig``) is
``tfigkd.experiments.attribution``.
"""

from __future__ import annotations

import logging

import numpy as np

from tfigkd.attribution.integrated_gradients import IntegratedGradients, ig_map
from tfigkd.attribution.settings import IGSettings
from tfigkd.data import normalize

log = logging.getLogger(__name__)

def make_compute_fn(teacher, settings, input_norm, mean, std, strategy=None):
    """``fn(x_uint8, labels) -> (maps, delta, rel_error)`` for ``write_store``.

    ``settings``: the ``IGSettings`` the store records (``ig_settings``), so
    the maps are computed with exactly the recorded settings.

    A teacher at another resolution than the data gets the images resized to
    its own; its maps are resized back to the data's (``teacher_io``).
    ``strategy``: local replicas the interpolation chunks are spread over
    (``tfigkd.distribute.inference_strategy``); the maps are the
    same up to float summation order.
    """
    from tfigkd.distribute import in_scope
    from tfigkd.models.teacher_io import affine, resize_images, resize_maps, teacher_size

    if not isinstance(settings, IGSettings):
        raise TypeError("make_compute_fn takes the IGSettings a store records "
                        "(tfigkd.attribution.precompute.ig_settings(cfg.ig)).")
    ig_set = settings
    ig = IntegratedGradients(in_scope(teacher, strategy), ig_set.output, strategy)
    norm = None if input_norm == "unit" else affine(input_norm, mean, std,
                                                     teacher.input_shape[-1])
    size = teacher_size(teacher)

    def compute(x_uint8, labels):
        data_size = tuple(x_uint8.shape[1:3])
        x = normalize(resize_images(x_uint8, size), input_norm, mean, std).numpy()
        if ig_set.adaptive:
            attr, delta, _ = ig.attribute_adaptive(
                x, labels, baseline=ig_set.baseline, rtol=ig_set.rtol, atol=ig_set.atol,
                start_steps=min(ig_set.start_steps, ig_set.n_steps), max_steps=ig_set.n_steps,
                method=ig_set.method, internal_batch_size=ig_set.internal_batch_size, norm=norm)
        else:
            attr, delta = ig.attribute(x, labels, baseline=ig_set.baseline,
                                       n_steps=ig_set.n_steps, method=ig_set.method,
                                       return_delta=True, norm=norm,
                                       internal_batch_size=ig_set.internal_batch_size)
        # F(x) - F(x') = sum(IG) + delta, the scale the error is relative to.
        span = np.abs(attr.reshape(len(x), -1).sum(1) + delta)
        rel = np.abs(delta) / np.maximum(span, 1e-6)
        return resize_maps(ig_map(attr, ig_set.reduce), data_size), delta, rel

    return compute
