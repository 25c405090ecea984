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
training seed. They are not stored: a store per seed would multiply the IG
store's size by the number of seeds for maps that take a second to derive.
Instead their settings (``derived_settings``: derivation, seed, sigma) are
part of every student's run recipe, so a finished student made with other
settings is refused rather than reused.

The other sources (``ig_all_classes``, ``gradcam``, ``smoothgrad``) are
stored like IG maps (``tfigkd.attribution.sources``).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from tfigkd.errors import UserError

from tfigkd.modes import DERIVED_SOURCES as DERIVED, SOURCES, STORED_SOURCES as STORED  # noqa: E402,F401
# Bump when a derivation changes, so students made with the old one are refused.
DERIVATION_VERSION = 1


def shuffled_maps(maps, seed):
    """Each example's map replaced by another example's (no example keeps its own).

    Maps streamed from disk (``LazyRows``) are re-indexed, not read.
    """
    from tfigkd.data.lazy import is_lazy

    lazy = is_lazy(maps)
    maps = maps if lazy else np.asarray(maps)
    n = len(maps)
    if n < 2:
        raise UserError("A shuffled overlay needs at least two training images.")
    order = np.random.default_rng([seed, 0x5F1]).permutation(n)
    src = np.empty(n, np.int64)
    src[order] = np.roll(order, -1)  # a cycle through all examples: a derangement
    return maps.take(src) if lazy else maps[src]


def noise_maps(maps, seed, sigma=2.0):
    """Smooth random maps with each image's own IG value distribution.

    Maps streamed from disk give streamed noise maps, written once beside
    them (same values as in memory: one generator runs through the rows in order).
    """
    from scipy.ndimage import gaussian_filter

    from tfigkd.data.lazy import LazyRows, NpyRowWriter, is_lazy
    from tfigkd.io import atomic_path

    rng = np.random.default_rng([seed, 0x2015E])

    def noisy(block):
        out = np.empty_like(block)
        for i, m in enumerate(block):
            noise = gaussian_filter(rng.standard_normal(m.shape), sigma, mode="wrap")
            flat = np.empty(m.size, block.dtype)
            flat[np.argsort(noise, axis=None, kind="stable")] = np.sort(m, axis=None)
            out[i] = flat.reshape(m.shape)
        return out

    if not is_lazy(maps):
        return noisy(np.asarray(maps))
    # The file's name holds everything its content depends on besides the base maps'
    # own file (whose name holds their key) and the rows selected.
    tag = hashlib.sha256(np.asarray(maps.rows, np.int64).tobytes()).hexdigest()[:12]
    path = (f"{os.path.splitext(maps.path)[0]}-noise-v{DERIVATION_VERSION}-s{int(seed)}"
            f"-sigma{float(sigma)!r}-{tag}.npy")
    if not os.path.exists(path):
        with atomic_path(path) as tmp, NpyRowWriter(tmp, maps.shape, maps.dtype) as out:
            for pos, block in maps.chunks():
                out.write(int(pos[0]), noisy(block))
    return LazyRows.open(path)


def derived_settings(source, seed, sigma=2.0):
    """What a derived control's maps depend on besides the IG maps (recorded in run recipes)."""
    out = {"source": source, "derived_from": "ig", "version": DERIVATION_VERSION, "seed": int(seed)}
    if source == "noise":
        out["sigma"] = float(sigma)
    return out


def overlay_maps(source, maps, seed, sigma=2.0):
    """The maps an overlay of ``source`` uses.

    Args:
        source: One of ``SOURCES``.
        maps: The stored maps: an array of IG maps (for ``ig`` and the derived
            controls), or a dict ``{source: maps}`` of stored sources.
        seed: The training seed (derived controls).
        sigma: Blur of the ``noise`` maps, in pixels.
    """
    if source not in SOURCES:
        raise UserError(f"Unknown overlay source {source!r}; use one of {', '.join(SOURCES)}.")
    base = "ig" if source in DERIVED else source
    if isinstance(maps, dict):
        if base not in maps:
            raise UserError(f"The {source} overlay needs the stored {base} maps; run "
                            f"`tfigkd precompute-ig --source {base}` with the same --out first.")
        maps = maps[base]
    elif base != "ig":
        raise UserError(f"The {source} overlay needs its stored maps (given: IG maps only); run "
                        f"`tfigkd precompute-ig --source {source}` and pass {{source: maps}}.")
    if source == "shuffled":
        return shuffled_maps(maps, seed)
    if source == "noise":
        return noise_maps(maps, seed, sigma)
    return maps
