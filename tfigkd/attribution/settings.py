"""The settings an IG store is keyed by: built once from the config, recorded, and used.

``ig_settings(cfg.ig)`` makes the ``IGSettings`` a store records in its
manifest, and the same object is what computes the maps
(``tfigkd.attribution.precompute.make_compute_fn``), so the recorded
settings are the settings used. The defaults are ``tfigkd.config.IGConfig``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from tfigkd.config import IGConfig

_IG = IGConfig()  # the defaults, written once (tfigkd.config.IGConfig)


@dataclass
class IGSettings:
    """Everything that determines the maps (recorded in the manifest).

    Built from the config by ``ig_settings``.
    """
    n_steps: int = _IG.n_steps
    method: str = _IG.method
    baseline: str = _IG.baseline
    output: str = _IG.output
    reduce: str = _IG.reduce
    internal_batch_size: int = _IG.internal_batch_size
    # Adaptive steps (n_steps is then the cap); absent in stores made before.
    adaptive: bool = _IG.adaptive
    start_steps: int = _IG.start_steps
    rtol: float = _IG.rtol
    atol: float = _IG.atol


# Keys added to IGSettings after stores were first written, with the values those
# older stores were made with (fixed steps): a fact about them, not a default.
_ADDED_LATER = {"adaptive": False, "start_steps": 8, "rtol": 0.01, "atol": 1e-4}


def stored_settings(d):
    """Settings read from a store, with the values of keys added after it was written."""
    if isinstance(d, dict) and "n_steps" in d:  # IG-type settings (other sources differ)
        return {**_ADDED_LATER, **d}
    return d


def ig_settings(ig_cfg):
    """The ``IGSettings`` of an ``IGConfig``: recorded in a store, and what computes its maps."""
    return IGSettings(**{f.name: getattr(ig_cfg, f.name) for f in fields(IGSettings)})
