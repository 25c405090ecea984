"""Control overlays: maps that look like IG maps but carry no (or the wrong) information.

Whether IG helps can only be judged against an overlay of the same strength
that is not IG. Two controls are derived from the stored IG maps, so they
match them exactly in everything but content:

- ``shuffled``: every image gets another image's IG map (a random
  derangement). This is exactly the misalignment of the authors' code, so
  the ablation measures what that bug cost.
- ``noise``: smooth random maps (Gaussian noise blurred with a Gaussian of
  ``sigma`` pixels) whose pixel values are the image's own IG values
  re-ordered, so each map keeps its IG value distribution but not its layout.

Both are deterministic functions of the IG maps and a seed; the seed is the
training seed, recorded with every run.
"""

from __future__ import annotations

import numpy as np

from tfigkd.errors import UserError

SOURCES = ("ig", "noise", "shuffled")


def shuffled_maps(maps, seed):
    """Each example's map replaced by another example's (no example keeps its own)."""
    maps = np.asarray(maps)
    n = len(maps)
    if n < 2:
        raise UserError("A shuffled overlay needs at least two training images.")
    order = np.random.default_rng([seed, 0x5F1]).permutation(n)
    out = np.empty_like(maps)
    out[order] = maps[np.roll(order, -1)]  # a cycle through all examples: a derangement
    return out


def noise_maps(maps, seed, sigma=2.0):
    """Smooth random maps with each image's own IG value distribution."""
    from scipy.ndimage import gaussian_filter

    maps = np.asarray(maps)
    rng = np.random.default_rng([seed, 0x2015E])
    out = np.empty_like(maps)
    for i, m in enumerate(maps):
        noise = gaussian_filter(rng.standard_normal(m.shape), sigma, mode="wrap")
        flat = np.empty(m.size, maps.dtype)
        flat[np.argsort(noise, axis=None, kind="stable")] = np.sort(m, axis=None)
        out[i] = flat.reshape(m.shape)
    return out


def overlay_maps(source, maps, seed):
    """The maps an overlay of ``source`` uses, derived from the IG ``maps``."""
    if source == "ig":
        return maps
    if source == "shuffled":
        return shuffled_maps(maps, seed)
    if source == "noise":
        return noise_maps(maps, seed)
    raise UserError(f"Unknown overlay source {source!r}; use one of {', '.join(SOURCES)}.")
