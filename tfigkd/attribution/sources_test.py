"""Stored overlay sources: IG over all classes, Grad-CAM and SmoothGrad (tf-explain)."""

import os

import numpy as np
import pytest

from tfigkd.ablation.agreement import spearman
from tfigkd.attribution.precompute import make_compute_fn
from tfigkd.attribution.settings import ig_settings
from tfigkd.experiments.attribution import load_ig_maps, precompute_ig, stored_sources
from tfigkd.attribution.store import StoreMismatchError
from tfigkd.config import MODES, config_from_dict
from tfigkd.data import load_splits
from tfigkd.errors import UserError
from tfigkd.experiments.student import mode_weights, overlay_source
from tfigkd.experiments.teacher import train_teacher
from tfigkd.testing import tiny_config_dict, write_npz


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sources")
    d = tiny_config_dict(write_npz(str(tmp / "toy.npz"), n_train=48, n_test=12), epochs=1)
    d["ig"] = {"n_steps": 8, "batch_size": 16, "internal_batch_size": 128, "shard_size": 20}
    d["controls"] = {"smoothgrad_samples": 4}
    cfg = config_from_dict(d)
    out = str(tmp / "run")
    train_teacher(cfg, out)
    splits = load_splits(cfg.data)
    precompute_ig(cfg, out, splits=splits, progress=False)
    return d, out, splits, load_ig_maps(cfg, out, splits)


# One setting of each source that changes its maps.
CHANGE = {"ig_all_classes": ("ig", "n_steps", 4), "gradcam": ("controls", "gradcam_guided", False),
          "smoothgrad": ("controls", "smoothgrad_samples", 2)}


@pytest.mark.parametrize("source", ["ig_all_classes", "gradcam", "smoothgrad"])
def test_source_is_stored_fingerprinted_and_refused_on_mismatch(run, source):
    d, out, splits, ig = run
    cfg = config_from_dict(d)
    state = np.random.get_state()[1].copy()
    man = precompute_ig(cfg, out, splits=splits, progress=False, source=source)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # caller's RNG untouched
    folder = os.path.join(out, "attributions", source)
    assert man["settings"]["source"] == source
    assert os.path.exists(os.path.join(folder, "manifest.json"))
    maps = load_ig_maps(cfg, out, splits, source=source)
    n = len(splits.train)
    assert maps.shape == ig.shape == (n, 12, 12)
    assert np.isfinite(maps).all() and (maps >= 0).all()
    assert (maps.reshape(n, -1).max(1) > 0).mean() > 0.5  # not all blank
    # A different method than IG: maps ranked differently (identical maps give 1.0).
    assert spearman(maps, ig) < 0.9
    section, key, value = CHANGE[source]
    other = config_from_dict({**d, section: {**d.get(section, {}), key: value}})
    with pytest.raises(StoreMismatchError, match="settings") as e:
        load_ig_maps(other, out, splits, source=source)
    assert "\n" not in str(e.value)
    with pytest.raises(StoreMismatchError, match="settings"):  # recomputing into it is refused too
        precompute_ig(other, out, splits=splits, progress=False, source=source)
    # Reused, not recomputed.
    before = os.path.getmtime(os.path.join(folder, "manifest.json"))
    precompute_ig(cfg, out, splits=splits, progress=False, source=source)
    assert os.path.getmtime(os.path.join(folder, "manifest.json")) == before


def test_ig_all_classes_is_the_sum_over_classes(run):
    d, out, splits, _ = run
    cfg = config_from_dict(d)
    from tfigkd.models import load_model_file

    precompute_ig(cfg, out, splits=splits, progress=False, source="ig_all_classes")
    stored = load_ig_maps(cfg, out, splits, source="ig_all_classes")[:6].astype(np.float32)
    teacher = load_model_file(os.path.join(out, "teacher.keras"), "teacher")
    fn = make_compute_fn(teacher, ig_settings(cfg.ig), cfg.teacher.train.input_norm, splits.mean,
                         splits.std)
    x = splits.train.x[:6]
    want = sum(fn(x, np.full(6, c))[0] for c in range(splits.num_classes))
    np.testing.assert_allclose(stored, want, rtol=2e-3, atol=1e-3 * want.max())
    true_class = fn(x, splits.train.y[:6])[0]
    assert not np.allclose(stored, true_class, rtol=0.05)


def test_unknown_gradcam_layer_is_one_line_error(run):
    d, out, splits, _ = run
    cfg = config_from_dict({**d, "controls": {"gradcam_layer": "nope"}})
    with pytest.raises(UserError, match="gradcam_layer.*'nope'"):
        precompute_ig(cfg, out, splits=splits, progress=False, source="gradcam")


def test_mode_grammar():
    cases = {"student": (0, None, 0), "kd": (1, None, 0), "kd_at": (1, None, 1),
             "kd_ig_at": (1, "ig", 1), "ig_all_classes": (0, "ig_all_classes", 0),
             "kd_ig_all_classes": (1, "ig_all_classes", 0), "kd_gradcam": (1, "gradcam", 0),
             "smoothgrad": (0, "smoothgrad", 0), "kd_noise": (1, "noise", 0)}
    scfg = config_from_dict({}).student
    for mode, (kd, source, at) in cases.items():
        assert mode in MODES
        alpha, p, gamma = mode_weights(mode, scfg)
        assert (alpha > 0, overlay_source(mode), gamma > 0, p > 0) == (bool(kd), source, bool(at),
                                                                        source is not None), mode
    assert stored_sources(["kd_noise", "kd_shuffled", "kd"]) == ["ig"]
    assert stored_sources(["kd_ig_all_classes", "gradcam", "ig"]) == ["gradcam", "ig",
                                                                     "ig_all_classes"]


def test_overlay_maps_take_each_mode_from_its_own_store():
    from tfigkd.augment.controls import overlay_maps

    rng = np.random.default_rng(0)
    stored = {s: rng.random((5, 4, 4)).astype(np.float16) for s in ("ig", "gradcam")}
    assert overlay_maps("gradcam", stored, 0) is stored["gradcam"]
    assert overlay_maps("ig", stored, 0) is stored["ig"]
    shuffled = overlay_maps("shuffled", stored, 0)  # derived from the IG maps
    assert sorted(map(bytes, shuffled)) == sorted(map(bytes, stored["ig"]))
    with pytest.raises(UserError, match="--source smoothgrad"):
        overlay_maps("smoothgrad", stored, 0)
    with pytest.raises(UserError, match="--source gradcam"):
        overlay_maps("gradcam", stored["ig"], 0)


def test_every_ig_source_records_the_settings_its_maps_are_computed_with(toy_npz):
    """ig_all_classes honours adaptive steps, so its store records them too: a store made
    with fixed steps is not reused after ig.adaptive changes."""
    from dataclasses import asdict

    from tfigkd.attribution.sources import source_settings
    from tfigkd.config import IGConfig

    import dataclasses

    cfg = config_from_dict(tiny_config_dict(toy_npz))
    for adaptive in (False, True):
        ig = IGConfig(**{**asdict(cfg.ig), "adaptive": adaptive, "rtol": 0.02})
        c = dataclasses.replace(cfg, ig=ig)
        for source in ("ig", "ig_all_classes"):
            s = source_settings(c, source)
            assert (s.adaptive, s.rtol) == (adaptive, 0.02), source
            assert {k: v for k, v in asdict(s).items() if k != "source"} == \
                asdict(ig_settings(ig))
