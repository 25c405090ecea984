import json
import os
import threading

import h5py
import keras
import numpy as np
import pytest

from tfigkd.experiments import checkpoint
from tfigkd.distill import Distiller
from tfigkd.experiments.checkpoint import (CheckpointWriter, checkpoint_plan, snapshot,
                                              write_snapshot)
from tfigkd.models import build_model
from tfigkd.testing import checkpoint_arrays, synthetic_images


def _trained_model():
    """A compiled DS-CNN (BatchNorm, Adam slots) after two steps: every kind of state."""
    keras.utils.set_random_seed(0)
    model = build_model("ds_cnn", (12, 12, 1), 3, filters=8, blocks=3)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = synthetic_images(32, (12, 12, 1), 3, seed=1)
    model.fit(x.astype(np.float32) / 255.0, y, batch_size=16, epochs=1, verbose=0)
    return model


def _layout(path):
    """Every group and dataset of an HDF5 file, in creation order, with attributes."""
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.append(
            (name, type(obj).__name__, sorted((k, str(v)) for k, v in obj.attrs.items()))))
    return out


def _assert_same_file(ref, got):
    assert _layout(got) == _layout(ref)
    a, b = checkpoint_arrays(ref), checkpoint_arrays(got)
    assert a.keys() == b.keys() and any(k.startswith("optimizer") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype, k


def _train_more(model):
    x, y = synthetic_images(16, (12, 12, 1), 3, seed=2)
    model.train_on_batch(x.astype(np.float32) / 255.0, y)


@pytest.mark.parametrize("planned", [True, False])
def test_weights_match_save_weights(tmp_path, planned):
    model = _trained_model()
    plan = checkpoint_plan(model) if planned else None
    assert (plan is not None) == planned
    for step in range(2):  # a plan recorded once serves later snapshots too
        ref, got = (str(tmp_path / f"{k}{step}.weights.h5") for k in ("ref", "got"))
        model.save_weights(ref)
        write_snapshot(snapshot(model, plan), got)
        _assert_same_file(ref, got)
        _train_more(model)
    # And it loads back into a fresh model of the same architecture.
    other = _trained_model()
    other.load_weights(got)
    model.load_weights(ref)
    for v, w in zip(model.weights + model.optimizer.variables,
                    other.weights + other.optimizer.variables):
        np.testing.assert_array_equal(v.numpy(), w.numpy())


def test_distiller_weights_match_save_weights(tmp_path):
    x, y = synthetic_images(32, (12, 12, 1), 3, seed=1)
    keras.utils.set_random_seed(0)
    student = build_model("ds_cnn", (12, 12, 1), 3, filters=8, blocks=3)
    teacher = build_model("ds_cnn", (12, 12, 1), 3, filters=8, blocks=3, dropout=0.2)
    d = Distiller(student, teacher, alpha=0.5)
    d.compile(optimizer="adam", metrics=["accuracy"])
    d.fit(x.astype(np.float32) / 255.0, y, batch_size=16, epochs=1, verbose=0)
    plan = checkpoint_plan(d)
    assert plan is not None
    d.save_weights(str(tmp_path / "ref.weights.h5"))
    write_snapshot(snapshot(d, plan), str(tmp_path / "got.weights.h5"))
    _assert_same_file(str(tmp_path / "ref.weights.h5"), str(tmp_path / "got.weights.h5"))


def _blocked_writer(monkeypatch):
    """Makes the background HDF5 write wait for ``release``; sets ``started`` when it begins."""
    started, release = threading.Event(), threading.Event()
    real = checkpoint.write_snapshot

    def slow(entries, path):
        started.set()
        assert release.wait(30)
        real(entries, path)

    monkeypatch.setattr(checkpoint, "write_snapshot", slow)
    return started, release


def test_state_names_a_checkpoint_only_once_it_is_complete(tmp_path, monkeypatch):
    model = _trained_model()
    work = str(tmp_path)
    writer = CheckpointWriter(work, "state.json")
    writer.submit(model, "epoch-0001.weights.h5", {"epoch": 1, "weights": "epoch-0001.weights.h5"},
                  stale=set())
    writer.join()
    started, release = _blocked_writer(monkeypatch)
    writer.submit(model, "epoch-0002.weights.h5", {"epoch": 2, "weights": "epoch-0002.weights.h5"},
                  stale={"epoch-0001.weights.h5"})
    assert started.wait(30)
    # Mid-write (a kill now must resume from epoch 1): the state still names
    # epoch 1, whose file is still there, and epoch 2's file is not in place.
    with open(os.path.join(work, "state.json")) as f:
        assert json.load(f)["epoch"] == 1
    assert os.path.exists(os.path.join(work, "epoch-0001.weights.h5"))
    assert not os.path.exists(os.path.join(work, "epoch-0002.weights.h5"))
    release.set()
    writer.join()
    with open(os.path.join(work, "state.json")) as f:
        assert json.load(f)["weights"] == "epoch-0002.weights.h5"
    assert sorted(f for f in os.listdir(work) if not f.startswith(".")) == [
        "epoch-0002.weights.h5", "state.json"]


def test_checkpoint_holds_the_values_at_submit_time(tmp_path, monkeypatch):
    model = _trained_model()
    before = [v.numpy().copy() for v in model.weights + model.optimizer.variables]
    started, release = _blocked_writer(monkeypatch)
    writer = CheckpointWriter(str(tmp_path), "state.json")
    writer.submit(model, "epoch-0001.weights.h5", {"epoch": 1}, stale=set())
    assert started.wait(30)
    # Training goes on while the file is written: change every variable in place.
    for v in model.weights + model.optimizer.variables:
        v.assign(v + keras.ops.ones_like(v))
    release.set()
    writer.join()
    restored = _trained_model()
    restored.load_weights(str(tmp_path / "epoch-0001.weights.h5"))
    for v, b in zip(restored.weights + restored.optimizer.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_a_failed_write_is_raised_and_the_state_is_not_moved(tmp_path, monkeypatch):
    model = _trained_model()
    writer = CheckpointWriter(str(tmp_path), "state.json")

    def full_disk(entries, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_snapshot", full_disk)
    writer.submit(model, "epoch-0001.weights.h5", {"epoch": 1}, stale=set())
    with pytest.raises(OSError, match="No space"):
        writer.join()
    assert os.listdir(tmp_path) == []
    writer.join()  # the error is raised once
