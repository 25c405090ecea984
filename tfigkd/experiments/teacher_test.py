import json
import os

import keras
import pytest

from tfigkd.config import config_from_dict
from tfigkd.experiments.teacher import train_teacher
from tfigkd.testing import tiny_config_dict, write_npz


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
    # 5 epochs x 8 steps: BatchNorm's moving statistics need ~40 steps to
    # settle before validation in inference mode beats chance.
    cfg = config_from_dict(tiny_config_dict(npz, epochs=5))
    out = str(tmp_path / "run")
    m = train_teacher(cfg, out)
    with open(os.path.join(out, "teacher_metrics.json")) as f:
        saved = json.load(f)
    assert saved["test_accuracy"] == pytest.approx(m["test_accuracy"])
    for key in ("val_accuracy", "test_accuracy", "trainable_params", "macs", "epochs",
                "train_seconds", "fingerprint", "config", "history"):
        assert key in saved
    assert saved["epochs"] == 5 and len(saved["history"]["val_accuracy"]) == 5
    assert saved["val_accuracy"] == max(saved["history"]["val_accuracy"])
    assert saved["sizes"] == {"train": 120, "val": 40, "test": 60}
    # The toy task is learnable: far above the 1/3 chance level.
    assert saved["test_accuracy"] > 0.6
    model = keras.models.load_model(saved["model_path"])
    assert model.count_params() > 0
    assert os.listdir(os.path.join(out, "logs", "teacher"))
    # A second call reuses the finished run.
    assert train_teacher(cfg, out)["train_seconds"] == saved["train_seconds"]


def test_resume_after_kill(tmp_path, npz, monkeypatch):
    cfg = config_from_dict(tiny_config_dict(npz, epochs=3))
    out = str(tmp_path / "run")
    import tfigkd.experiments.fit as fit_mod

    real_fit = fit_mod.fit_resumable

    def killing_fit(*a, **kw):
        kw["callbacks"] = [_Kill(2)]
        return real_fit(*a, **kw)

    monkeypatch.setattr("tfigkd.experiments.teacher.fit_resumable", killing_fit)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, out)
    with open(os.path.join(out, "work", "teacher", "state.json")) as f:
        assert json.load(f)["epoch"] == 2
    assert not os.path.exists(os.path.join(out, "teacher_metrics.json"))
    monkeypatch.setattr("tfigkd.experiments.teacher.fit_resumable", real_fit)
    m = train_teacher(cfg, out)
    # Epochs 1-2 from the first run, epoch 3 from the resumed one.
    assert len(m["history"]["val_accuracy"]) == 3
    assert sorted(os.listdir(os.path.join(out, "work", "teacher"))) == [
        "epoch-0003.weights.h5", "state.json"]


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
