"""Adaptive IG in the precompute stage: settings recorded, checked, old stores still read."""

import glob
import json
import os

import numpy as np
import pytest

from tfigkd.experiments.attribution import load_ig_maps, precompute_ig
from tfigkd.attribution.store import StoreMismatchError
from tfigkd.config import load_config
from tfigkd.data import load_splits


def _fresh(run, name):
    """A new run folder sharing ``run``'s teacher (hard links)."""
    out = run + "-" + name
    os.makedirs(out)
    for f in ("teacher.keras", "teacher_metrics.json"):
        os.link(os.path.join(run, f), os.path.join(out, f))
    return out


def _rel_errors(out):
    return np.concatenate([json.load(open(p))["rel_error"]
                           for p in sorted(glob.glob(os.path.join(out, "ig", "shard-*.json")))])


def test_adaptive_settings_are_recorded_and_a_fixed_store_is_refused(run_copy, tiny_yaml):
    cfg = load_config(tiny_yaml, ["ig.adaptive=true", "ig.start_steps=2"])
    with pytest.raises(StoreMismatchError, match="adaptive"):
        precompute_ig(cfg, run_copy, progress=False)
    splits = load_splits(cfg.data)
    runs = {}
    for name, overrides in {"fixed2": ["ig.n_steps=2"],
                            "loose": ["ig.adaptive=true", "ig.start_steps=2", "ig.rtol=1000000.0"],
                            "tight": ["ig.adaptive=true", "ig.start_steps=2", "ig.rtol=0.01"]
                            }.items():
        c = load_config(tiny_yaml, overrides)
        runs[name] = _fresh(run_copy, name)
        manifest = precompute_ig(c, runs[name], progress=False)
        assert manifest["settings"]["adaptive"] is (name != "fixed2")
        runs[name] = (runs[name], load_ig_maps(c, runs[name], splits))
    # Nothing to refine: exactly the fixed 2-step maps.
    np.testing.assert_array_equal(runs["loose"][1], runs["fixed2"][1])
    # Refined where the error was too large: other maps, smaller errors.
    assert not np.array_equal(runs["tight"][1], runs["fixed2"][1])
    assert np.median(_rel_errors(runs["tight"][0])) < np.median(_rel_errors(runs["fixed2"][0]))


def test_store_written_before_adaptive_ig_still_loads(run_copy, tiny_yaml):
    cfg = load_config(tiny_yaml)
    files = glob.glob(os.path.join(run_copy, "ig", "*.json"))
    for path in files:  # strip the keys a pre-adaptive tfigkd did not write
        data = json.load(open(path))
        if "settings" in data:
            for key in ("adaptive", "start_steps", "rtol", "atol"):
                data["settings"].pop(key)
            json.dump(data, open(path, "w"))
    maps = load_ig_maps(cfg, run_copy, load_splits(cfg.data))
    assert len(maps) and np.isfinite(maps).all()
    precompute_ig(cfg, run_copy, progress=False)  # reused, not refused


def test_nested_rule_is_recorded_and_other_rule_stores_are_refused(run_copy, tiny_yaml):
    nested = ["ig.adaptive=true", "ig.method=nested_trapezoid", "ig.start_steps=2",
              "ig.n_steps=8", "ig.rtol=0.01"]
    splits = load_splits(load_config(tiny_yaml).data)
    gl = _fresh(run_copy, "gl")
    gl_cfg = load_config(tiny_yaml, [o for o in nested if "method" not in o])
    precompute_ig(gl_cfg, gl, progress=False)
    cfg = load_config(tiny_yaml, nested)
    with pytest.raises(StoreMismatchError, match="nested_trapezoid"):
        load_ig_maps(cfg, gl, splits)  # same steps and tolerance, other rule: refused
    out = _fresh(run_copy, "nested")
    manifest = precompute_ig(cfg, out, progress=False)
    assert manifest["settings"]["method"] == "nested_trapezoid"
    maps = load_ig_maps(cfg, out, splits)
    assert np.isfinite(maps).all() and not np.array_equal(maps, load_ig_maps(gl_cfg, gl, splits))
    with pytest.raises(StoreMismatchError, match="rtol"):
        load_ig_maps(load_config(tiny_yaml, nested[:-1] + ["ig.rtol=0.02"]), out, splits)


def test_nested_rule_needs_powers_of_two(tiny_yaml):
    from tfigkd.config import ConfigError

    with pytest.raises(ConfigError, match="powers of two"):
        load_config(tiny_yaml, ["ig.adaptive=true", "ig.method=nested_trapezoid",
                                "ig.start_steps=3", "ig.n_steps=12"])
