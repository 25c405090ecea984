"""``tfigkd ablate`` on tiny data: shards that union to the whole, the report, pairing."""

import json
import os

import numpy as np
import pytest

from tfigkd.testing import tiny_run_config, write_config
from tfigkd.cli import main
from tfigkd.config import config_from_dict
from tfigkd.data import load_splits
from tfigkd.experiments.ablate import ablate, ablation_units, shard_units, subset_rows


def test_shards_union_to_the_whole():
    units = ablation_units(["student", "kd", "kd_ig"], range(4), subsets=3)
    assert len(units) == 36
    for n in (1, 2, 5, 36, 40):
        parts = [shard_units(units, (i, n)) for i in range(n)]
        flat = [tuple(sorted(u.items(), key=str)) for p in parts for u in p]
        assert len(flat) == len(set(flat)) == 36


def test_monte_carlo_subsets_are_seeded_stratified_and_distinct(toy_npz):
    splits = load_splits(config_from_dict(tiny_run_config(toy_npz)).data)
    a, b = subset_rows(splits, 0, 0.8), subset_rows(splits, 1, 0.8)
    assert len(a) == len(b) == 96
    np.testing.assert_array_equal(a, subset_rows(splits, 0, 0.8))
    assert not np.array_equal(a, b)
    counts = np.bincount(splits.train.y[a], minlength=3)
    assert counts.max() - counts.min() <= 1


@pytest.fixture(scope="module")
def ablated(toy_npz, ig_run, tmp_path_factory):
    import shutil

    d = tiny_run_config(toy_npz)
    d["ablation"] = {"agreement_images": 12, "bootstrap_resamples": 500}
    d["student"]["teacher_mode"] = "cached"
    d["student"]["alpha"] = 0.5
    d["student"]["train"]["epochs"] = 1  # what is checked is the bookkeeping, not accuracy
    cfg = config_from_dict(d)
    out = str(tmp_path_factory.mktemp("ablate") / "ab")
    # The shared run's teacher and IG store have this config's recipe: ablate reuses them.
    shutil.copytree(ig_run, out)
    modes = ["student", "kd", "kd_ig", "kd_shuffled"]
    first = ablate(cfg, out, seeds=[0, 1], modes=modes, shard=(0, 2))
    second = ablate(cfg, out, seeds=[0, 1], modes=modes, shard=(1, 2))
    return cfg, out, first, second, write_config(tmp_path_factory.mktemp("c") / "c.yaml", d)


def test_first_shard_reports_what_is_missing(ablated):
    _, _, first, _, _ = ablated
    assert first["units"] == 8 and first["finished"] == 4 and len(first["missing"]) == 4
    assert "4 of 8 units are not finished" in first["notes"][0]


def test_report_of_the_whole(ablated):
    _, out, _, second, _ = ablated
    assert second["finished"] == 8 and not second["missing"]
    saved = json.load(open(os.path.join(out, "ablation.json")))
    assert len(saved["runs"]) == 8
    for r in saved["runs"]:
        assert {"mode", "seed", "subset", "val_accuracy", "test_accuracy",
                "agreement_spearman", "agreement_iou"} <= set(r)
        assert -1 <= r["agreement_spearman"] <= 1 and 0 <= r["agreement_iou"] <= 1
    pairs = {(c["a"], c["b"], c["metric"]) for c in saved["comparisons"]}
    assert ("kd_ig", "student", "test_accuracy") in pairs and ("kd_ig", "kd", "test_accuracy") in pairs
    assert ("kd", "student", "agreement_iou") in pairs and ("student", "kd", "test_accuracy") not in pairs
    for c in saved["comparisons"]:
        assert c["n"] == 2
        assert {"mean_diff", "ci_low", "ci_high", "t_p", "wilcoxon_p", "holm_p", "cohen_d"} <= set(c)
    assert any("low-powered" in n for n in saved["notes"])
    text = open(os.path.join(out, "ablation.md")).read()
    assert "| kd_ig - student | 2 |" in text and "Holm" in text
    for png in ("ablation_accuracy.png", "ablation_differences.png"):
        assert os.path.getsize(os.path.join(out, png)) > 1000


def test_pairing_same_seed_same_start(ablated):
    import keras

    _, out, _, _, _ = ablated
    # Different modes of one seed differ only in what the mode changes: the recorded
    # recipes agree on the seed and data, and the differing keys are the mode's.
    a = json.load(open(os.path.join(out, "students", "student-s1", "metrics.json")))
    b = json.load(open(os.path.join(out, "students", "kd_shuffled-s1", "metrics.json")))
    assert a["run_recipe"]["fingerprint"] == b["run_recipe"]["fingerprint"]
    assert a["run_recipe"]["student"] == b["run_recipe"]["student"]
    assert a["fingerprint"] == b["fingerprint"]
    keras.backend.clear_session()


def test_cli_report_only_trains_nothing(ablated, capsys):
    _, out, _, _, cfg_path = ablated
    stamps = {p: os.path.getmtime(p) for p in
              (os.path.join(out, "students", f"{m}-s{s}", "student.keras")
               for m in ("student", "kd") for s in (0, 1))}
    assert main(["ablate", cfg_path, "--out", out, "--seeds", "2", "--modes", "student", "kd",
                 "kd_ig", "kd_shuffled", "--report"]) == 0
    assert "8 of 8 units finished" in capsys.readouterr().out
    assert {p: os.path.getmtime(p) for p in stamps} == stamps
    assert main(["ablate", cfg_path, "--out", out, "--modes", "kd_ij"]) == 2
    assert "not a mode" in capsys.readouterr().err


def test_stored_and_derived_overlay_settings_are_recorded_and_checked(ablated, tmp_path):
    import shutil

    from tfigkd.errors import UserError
    from tfigkd.experiments.plan import Unit, plan_of
    from tfigkd.experiments.student import train_student

    cfg, out, _, _, _ = ablated
    copy = str(tmp_path / "ab")
    shutil.copytree(out, copy)
    # A stored control (Grad-CAM via tf-explain) as an ablation mode beside the others.
    report = ablate(cfg, copy, seeds=[0], modes=["kd_ig", "kd_gradcam"])
    assert {r["mode"] for r in report["runs"]} == {"kd_ig", "kd_gradcam"}
    assert os.path.exists(os.path.join(copy, "attributions", "gradcam", "manifest.json"))
    m = json.load(open(os.path.join(copy, "students", "kd_gradcam-s0", "metrics.json")))
    assert m["run_recipe"]["overlay"]["source"] == "gradcam"
    assert m["run_recipe"]["overlay"]["settings"]["use_guided_grads"] is True
    # A derived control records its derivation (seed, version) and is refused when it differs.
    path = os.path.join(copy, "students", "kd_shuffled-s1", "metrics.json")
    m = json.load(open(path))
    assert m["run_recipe"]["overlay"] == {"source": "shuffled", "derived_from": "ig",
                                          "version": 1, "seed": 1}
    splits = load_splits(cfg.data)
    keras_file = os.path.join(os.path.dirname(path), "student.keras")
    stamp = os.path.getmtime(keras_file)
    m["run_recipe"]["overlay"]["version"] = 0
    json.dump(m, open(path, "w"))
    with pytest.raises(UserError, match=r"overlay\.version: 0 -> 1"):
        train_student(plan_of(cfg, copy, splits), Unit("kd_shuffled", 1))
    # Runs from before overlay settings were recorded count as version 1 and are reused.
    del m["run_recipe"]["overlay"]
    json.dump(m, open(path, "w"))
    assert train_student(plan_of(cfg, copy, splits), Unit("kd_shuffled", 1))["seed"] == 1
    assert os.path.getmtime(keras_file) == stamp
    # Changing the noise blur refuses a finished noise student.
    cfg2 = config_from_dict({**_dict(cfg), "controls": {"noise_sigma": 3.0}})
    ablate(cfg, copy, seeds=[0], modes=["noise"])
    with pytest.raises(UserError, match=r"overlay\.sigma: 2\.0 -> 3\.0"):
        ablate(cfg2, copy, seeds=[0], modes=["noise"])


def _dict(cfg):
    from tfigkd.config import config_to_dict

    return config_to_dict(cfg)
