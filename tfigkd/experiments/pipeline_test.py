import json
import os

import numpy as np
import pytest

from tfigkd.config import config_from_dict
from tfigkd.data import load_splits
from tfigkd.experiments.pipeline import run_pipeline
from tfigkd.testing import tiny_config_dict, write_npz


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    d = tiny_config_dict(write_npz(str(tmp / "toy.npz"), n_train=120, n_test=45,
                                   shape=(16, 16, 1)), epochs=3)
    d["ig"] = {"n_steps": 8, "batch_size": 16, "internal_batch_size": 128, "shard_size": 50}
    d["student"] = {
        "model": {"name": "truncated_student", "kwargs": {"blocks_removed": 15}},
        # One epoch: what is checked is the bookkeeping of the run, not accuracy.
        "train": {"epochs": 1, "batch_size": 16, "verbose": 0, "input_norm": "unit",
                  "optimizer": {"name": "adam", "lr": 0.003, "schedule": "constant"},
                  "augment": {"crop_pad": 1, "flip": True}},
        "modes": ["student", "kd", "ig", "kd_ig", "kd_at"],
        "at_layers": [["features_2", "features_2"]],
        "p": 0.5,
    }
    d["export"] = {"calibration_images": 16}
    out = str(tmp / "out")
    return run_pipeline(config_from_dict(d), out, verbose=0), out, d


def test_accuracy_of(path, splits):
    import keras

    model = keras.models.load_model(path)
    pred = np.argmax(model.predict(splits.test.x.astype("float32") / 255.0, verbose=0), -1)
    return float(np.mean(pred == splits.test.y))


test_accuracy_of.__test__ = False  # a helper, not a test


def test_summary_content(result):
    s, out, d = result
    with open(os.path.join(out, "summary.json")) as f:
        saved = json.load(f)
    assert saved["fingerprint"] == s["fingerprint"] and len(saved["fingerprint"]) == 64
    assert saved["sizes"] == {"train": 90, "val": 30, "test": 45}
    assert [m["mode"] for m in saved["models"]] == ["student", "kd", "ig", "kd_ig", "kd_at"]
    by_mode = {m["mode"]: m for m in saved["models"]}
    assert by_mode["student"]["alpha"] == 0 and by_mode["student"]["p"] == 0
    assert by_mode["kd_ig"]["alpha"] == 0.01 and by_mode["kd_ig"]["p"] == 0.5
    assert by_mode["kd_at"]["gamma"] == 0.8
    splits = load_splits(config_from_dict(d).data)
    for m in saved["models"]:
        # The reported figure is the saved model's accuracy on the test split.
        assert m["test_accuracy"] == pytest.approx(test_accuracy_of(m["keras_path"], splits))
    assert len({m["trainable_params"] for m in saved["models"]}) == 1
    best = max(saved["models"], key=lambda m: m["val_accuracy"])
    assert saved["best_student"] == best["name"]
    assert saved["ig"]["completeness"]["median_rel_error"] < 0.2
    e = saved["int8"]
    assert os.path.exists(e["path"]) and e["bytes"] == os.path.getsize(e["path"])
    assert e["agreement_with_keras"] >= 0.8
    assert e["mediapipe"]["loads"] is True  # the run's int8 file is app-ready
    assert saved["tfigkd_version"]


def test_report_and_plots(result):
    _, out, _ = result
    text = open(os.path.join(out, "report.md")).read()
    assert "| kd_ig |" in text and "int8 TFLite" in text
    for png in ("curves.png", "modes.png", "ig_grid.png"):
        assert os.path.getsize(os.path.join(out, "plots", png)) > 1000


def test_rerun_redoes_nothing(result):
    s, out, d = result
    stamps = {m["keras_path"]: os.path.getmtime(m["keras_path"]) for m in s["models"]}
    s2 = run_pipeline(config_from_dict(d), out, verbose=0)
    assert [m["test_accuracy"] for m in s2["models"]] == [m["test_accuracy"] for m in s["models"]]
    assert {p: os.path.getmtime(p) for p in stamps} == stamps


def test_cached_teacher_logits_and_adopted_teacher(result, tmp_path):
    """teacher_mode: cached stores index-aligned logits once; teacher.path skips training."""
    from tfigkd.config import config_from_dict
    from tfigkd.data import load_splits
    from tfigkd.distill.logit_cache import compute_logits, load_logits
    from tfigkd.io import file_sha256

    s, out, d = result
    d2 = {**d, "teacher": {**d["teacher"], "path": s["teacher"]["model_path"]},
          "student": {**d["student"], "modes": ["kd"], "teacher_mode": "cached"}}
    d2.pop("ig")
    cfg = config_from_dict(d2)
    out2 = str(tmp_path / "cached")
    s2 = run_pipeline(cfg, out2, verbose=0)
    assert not os.path.exists(os.path.join(out2, "teacher.keras"))  # adopted, not retrained
    assert s2["teacher"]["test_accuracy"] == pytest.approx(s["teacher"]["test_accuracy"])
    splits = load_splits(cfg.data)
    tpath = s["teacher"]["model_path"]
    cached = load_logits(os.path.join(out2, "teacher_logits"), splits.train,
                         splits.fingerprint, file_sha256(tpath))
    import keras

    fresh = compute_logits(keras.models.load_model(tpath), splits.train, "dataset",
                           splits.mean, splits.std)
    np.testing.assert_allclose(cached, fresh, atol=1e-5)
    m = s2["models"][0]
    assert m["mode"] == "kd"
    assert m["test_accuracy"] == pytest.approx(test_accuracy_of(m["keras_path"], splits))
    meta = json.load(open(os.path.join(os.path.dirname(m["keras_path"]), "metrics.json")))
    assert meta["teacher_mode"] == "cached"


def test_changed_settings_are_not_silently_reused(result):
    from tfigkd.errors import UserError

    _, out, d = result
    d2 = {**d, "student": {**d["student"], "temperature": 4.0}}
    with pytest.raises(UserError, match=r"student.temperature: 2.5 -> 4.0.*new --out"):
        run_pipeline(config_from_dict(d2), out, verbose=0)


def test_report_of_modes_with_several_overlay_sources(result, tmp_path):
    """kd_ig beside kd_gradcam: the maps arrive as {source: maps}; the grid shows the IG ones."""
    from tfigkd.experiments.attribution import load_ig_maps
    from tfigkd.experiments.report import write_report
    from tfigkd.io import read_json

    summary, out, d = result
    cfg = config_from_dict(d)
    splits = load_splits(cfg.data)
    maps = load_ig_maps(cfg, out, splits)
    students = [dict(read_json(os.path.join(out, "students", f"{m}-s0", "metrics.json")),
                     name=m) for m in ("student", "kd_ig")]
    t_metrics = read_json(os.path.join(out, "teacher_metrics.json"))
    write_report(str(tmp_path), summary, splits, {"ig": maps, "gradcam": maps[::-1]}, students,
                 t_metrics, cfg)
    assert os.path.getsize(tmp_path / "plots" / "ig_grid.png") > 1000
    assert "ig_grid.png" in open(tmp_path / "report.md").read()
