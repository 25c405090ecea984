"""The main job's additions to ``tfigkd run``: statistics over seeds, warnings, MCU export, latency."""

import json
import os
import types

import pytest

from tfigkd.config import config_from_dict
from tfigkd.experiments.pipeline import (ig_warnings, mode_statistics, run_pipeline,
                                         teacher_warnings)
from tfigkd.experiments.report import _statistics_lines
from tfigkd.testing import tiny_config_dict, write_npz


def _rows(acc):
    return [{"mode": m, "seed": s, "val_accuracy": a, "test_accuracy": a}
            for m, seq in acc.items() for s, a in enumerate(seq)]


def test_statistics_and_warnings_on_known_numbers():
    acc = {"student": [0.80, 0.81, 0.79, 0.80, 0.82, 0.78],
           "kd": [0.85, 0.86, 0.84, 0.85, 0.87, 0.83],       # +0.05 every seed: clear
           "kd_ig": [0.80, 0.82, 0.78, 0.81, 0.81, 0.78]}    # within the spread
    st = mode_statistics(_rows(acc))
    assert st["modes"]["kd"]["test_accuracy"]["mean"] == pytest.approx(0.85)
    by = {(c["a"], c["b"]): c for c in st["comparisons"] if c["metric"] == "test_accuracy"}
    assert by["kd", "student"]["mean_diff"] == pytest.approx(0.05)
    assert by["kd", "student"]["holm_p"] < 0.01
    text = " ".join(st["warnings"])
    assert "kd_ig vs student" in text and "kd vs student" not in text
    assert "not better" not in text
    # A teacher below the plain student, or at chance, is flagged, with any number of seeds.
    rows = _rows(acc)
    assert teacher_warnings({"test_accuracy": 0.90}, rows, 10, 800) == []
    (w,) = teacher_warnings({"test_accuracy": 0.79}, rows, 10, 800)
    assert "not better than the plain student (0.8000" in w
    one_seed = _rows({"student": [0.8], "kd": [0.82]})
    at_chance = teacher_warnings({"test_accuracy": 0.10}, one_seed, 10, 800)
    assert len(at_chance) == 2 and "at chance level (1/10 = 0.1000)" in at_chance[0]
    # Chance is judged against the test size: 30 % of 40 images over 4 classes could be
    # luck (binomial p ~ 0.3); of 4,000 images it could not.
    assert teacher_warnings({"test_accuracy": 0.30}, [], 4, 40)[0].startswith(
        "The teacher's test accuracy (0.3000) is at chance")
    assert teacher_warnings({"test_accuracy": 0.30}, [], 4, 4000) == []
    # IG maps far from converged are flagged too.
    ig_cfg = types.SimpleNamespace(n_steps=16)
    (w,) = ig_warnings({"median_rel_error": 0.35, "p90_rel_error": 1.8}, ig_cfg)
    assert "median completeness error 35.0% (p90 180.0%) at ig.n_steps = 16" in w
    assert ig_warnings({"median_rel_error": 0.02, "p90_rel_error": 0.1}, ig_cfg) == []
    assert ig_warnings(None, ig_cfg) == []
    lines = "\n".join(_statistics_lines(st))
    assert "| kd | 6 | 0.8500 ±" in lines and "low-powered" in lines
    # One seed per mode: no statistics at all.
    assert mode_statistics(_rows({"student": [0.8], "kd": [0.9]})) is None


def test_run_with_seeds_mcu_export_and_latency(tmp_path):
    d = tiny_config_dict(write_npz(str(tmp_path / "toy.npz"), n_train=96, n_test=40,
                                   shape=(16, 16, 1)), epochs=2)
    d["ig"] = {"n_steps": 4, "batch_size": 16, "internal_batch_size": 64, "shard_size": 100}
    d["student"] = {
        "model": {"name": "ds_cnn", "kwargs": {"filters": 8, "blocks": 3}},
        "train": {"epochs": 1, "batch_size": 16, "verbose": 0, "input_norm": "unit",
                  "optimizer": {"name": "adam", "lr": 0.003, "schedule": "constant"}},
        "modes": ["student", "kd"], "seeds": [0, 1], "teacher_mode": "cached"}
    d["export"] = {"calibration_images": 16, "targets": ["phone", "mcu"], "latency": True,
                   "latency_runs": 10}
    out = str(tmp_path / "out")
    s = run_pipeline(config_from_dict(d), out, verbose=0)
    saved = json.load(open(os.path.join(out, "summary.json")))
    assert [(m["mode"], m["seed"]) for m in saved["models"]] == [
        ("student", 0), ("student", 1), ("kd", 0), ("kd", 1)]
    assert saved["statistics"]["modes"]["kd"]["test_accuracy"]["n"] == 2
    dep = saved["deploy"]
    assert set(dep["targets"]) == {"phone", "mcu"}
    mcu = dep["targets"]["mcu"]
    assert mcu["arena_bytes"] > 0 and os.path.exists(mcu["c_source"])
    assert dep["targets"]["phone"]["mediapipe_loads"] is True
    names = [r["name"] for r in dep["latency"]["rows"]]
    assert names == ["teacher_fp32", "teacher_int8", "student_int8"]
    assert dep["latency"]["speedup_vs_teacher_fp32"] > 0
    report = open(os.path.join(out, "report.md")).read()
    assert "## Modes over seeds" in report and "## Deployment" in report
    assert "speed-up" in report
    assert s["warnings"] == saved["warnings"]
    for w in saved["warnings"]:
        assert f"**Warning: {w}**" in report
