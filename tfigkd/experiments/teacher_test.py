import json
import os

import keras
import numpy as np
import pytest

from tfigkd.config import config_from_dict
from tfigkd.experiments.teacher import train_teacher
from tfigkd.testing import checkpoint_arrays, tiny_config_dict, write_npz


class _Kill(keras.callbacks.Callback):
    """Simulates a kill right after an epoch's state has been written."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at_epoch:
            raise KeyboardInterrupt("killed")


@pytest.fixture
def npz(tmp_path):
    return write_npz(str(tmp_path / "toy.npz"), n_train=160, n_test=60)


def test_tiny_teacher_end_to_end(tmp_path, npz):
    # 2 short epochs (8 steps each) suffice: BatchNorm statistics are
    # re-estimated before validation, so no moving-average lag to wait out.
    cfg = config_from_dict(tiny_config_dict(npz, epochs=2))
    out = str(tmp_path / "run")
    m = train_teacher(cfg, out)
    with open(os.path.join(out, "teacher_metrics.json")) as f:
        saved = json.load(f)
    assert saved["test_accuracy"] == pytest.approx(m["test_accuracy"])
    for key in ("val_accuracy", "test_accuracy", "trainable_params", "macs", "epochs",
                "train_seconds", "fingerprint", "config", "history"):
        assert key in saved
    assert saved["epochs"] == 2 and len(saved["history"]["val_accuracy"]) == 2
    assert saved["val_accuracy"] == max(saved["history"]["val_accuracy"])
    assert saved["sizes"] == {"train": 120, "val": 40, "test": 60}
    # The toy task is learnable: far above the 1/3 chance level.
    assert saved["test_accuracy"] > 0.6
    model = keras.models.load_model(saved["model_path"])
    assert model.count_params() > 0
    assert os.listdir(os.path.join(out, "logs", "teacher"))
    # A second call reuses the finished run.
    assert train_teacher(cfg, out)["train_seconds"] == saved["train_seconds"]


def train_killed_after_first_epoch(cfg, out, monkeypatch):
    """Runs train_teacher until the end of epoch 1, where a KeyboardInterrupt stops it."""
    import tfigkd.experiments.fit as fit_mod

    real_fit = fit_mod.fit_resumable

    def killing_fit(*a, **kw):
        kw["callbacks"] = [_Kill(1)]
        return real_fit(*a, **kw)

    monkeypatch.setattr("tfigkd.experiments.teacher.fit_resumable", killing_fit)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, out)
    monkeypatch.setattr("tfigkd.experiments.teacher.fit_resumable", real_fit)


def test_resume_after_kill_is_exact(tmp_path, npz, monkeypatch):
    # Dropout in the teacher, augmentation on: every source of randomness is in play.
    d = tiny_config_dict(npz, epochs=3)
    d["teacher"]["model"]["kwargs"]["dropout"] = 0.3
    d["teacher"]["train"]["augment"] = {"crop_pad": 2, "flip": True}
    cfg = config_from_dict(d)
    whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    m_whole = train_teacher(cfg, whole)
    train_killed_after_first_epoch(cfg, resumed, monkeypatch)
    with open(os.path.join(resumed, "work", "teacher", "state.json")) as f:
        assert json.load(f)["epoch"] == 1
    assert not os.path.exists(os.path.join(resumed, "teacher_metrics.json"))
    m = train_teacher(cfg, resumed)
    assert m["history"]["val_accuracy"] == m_whole["history"]["val_accuracy"]
    assert m["history"]["loss"] == m_whole["history"]["loss"]
    # The last checkpoint, and the best epoch's (kept to write the best model).
    with open(os.path.join(resumed, "work", "teacher", "state.json")) as f:
        best = json.load(f)["best_weights"]
    assert best == f"epoch-{m['best_epoch']:04d}.weights.h5"
    assert sorted(os.listdir(os.path.join(resumed, "work", "teacher"))) == sorted(
        {"epoch-0003.weights.h5", best, "recipe.json", "state.json"})
    a, b = (checkpoint_arrays(os.path.join(r, "work", "teacher", "epoch-0003.weights.h5"))
            for r in (whole, resumed))
    assert a.keys() == b.keys()
    iterations = [k for k in a if k.startswith("optimizer") and a[k].shape == ()]
    assert iterations and int(a[iterations[0]]) == int(b[iterations[0]]) == 3 * 8
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_partial_run_with_other_settings_is_refused(tmp_path, npz, monkeypatch):
    from tfigkd.errors import UserError

    cfg = config_from_dict(tiny_config_dict(npz, epochs=3))
    out = str(tmp_path / "run")
    train_killed_after_first_epoch(cfg, out, monkeypatch)
    d = tiny_config_dict(npz, epochs=3)
    d["teacher"]["model"]["kwargs"]["blocks_removed"] = 15
    state = os.path.join(out, "work", "teacher", "state.json")
    before = open(state).read()
    with pytest.raises(UserError, match=r"partial teacher run \(epoch 1 of 3\).*"
                       r"teacher\.model\.kwargs\.blocks_removed: 16 -> 15"):
        train_teacher(config_from_dict(d), out)
    assert open(state).read() == before  # the partial run is untouched


def test_other_data_in_same_folder_is_refused(tmp_path, npz):
    out = str(tmp_path / "run")
    train_teacher(config_from_dict(tiny_config_dict(npz, epochs=1)), out)
    other = write_npz(str(tmp_path / "other.npz"), n_train=160, n_test=60, seed=9)
    with pytest.raises(ValueError, match="other data"):
        train_teacher(config_from_dict(tiny_config_dict(other, epochs=1)), out)


def test_saved_teacher_loads_without_tfigkd_objects(tmp_path, npz):
    import subprocess
    import sys

    out = str(tmp_path / "run")
    m = train_teacher(config_from_dict(tiny_config_dict(npz, epochs=1)), out)
    code = ("import keras; m = keras.models.load_model(%r); "
            "assert not m.compiled; print(m.count_params())" % m["model_path"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
