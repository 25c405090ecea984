"""``tfigkd tune`` on tiny data: a study, its outputs, kill + resume, two workers, grid, pruning,
bad input, and proof that the trials never read the test split."""

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from tfigkd.testing import ROOT, tfigkd_subprocess, tiny_run_config, write_config
from tfigkd.cli import main
from tfigkd.config import load_config
from tfigkd.experiments import tune as tune_mod
from tfigkd.experiments.tune import tune

SPACE = {"student.alpha": {"low": 0.05, "high": 0.9, "log": True},
         "student.temperature": {"choices": [2.0, 4.0]}}


def tune_config(npz, teacher, tmp, name="t.yaml", **tune_section):
    d = tiny_run_config(npz)
    d["teacher"]["path"] = teacher
    d["student"].update(teacher_mode="cached", modes=["student"])
    d["student"]["train"].update(epochs=2, optimizer={"name": "adam", "lr": 0.01,
                                                      "schedule": "constant"})
    d["tune"] = {"mode": "kd_ig", "trials": 3, "space": SPACE, "heartbeat_s": 1, "grace_s": 2,
                 **tune_section}
    return write_config(os.path.join(str(tmp), name), d)


def storage_of(out):
    return f"sqlite:///{os.path.join(out, 'study.db')}"


def load(out, name):
    return optuna.load_study(study_name=name, storage=storage_of(out))


class TestSplitSentinel:
    """Replaces the test split: any attribute, length or iteration fails and is recorded."""
    touched = []

    def __getattr__(self, name):
        TestSplitSentinel.touched.append(name)
        raise AssertionError(f"the test split was read during tuning (.{name})")

    def __len__(self):
        TestSplitSentinel.touched.append("__len__")
        raise AssertionError("the test split was read during tuning (len)")


@pytest.fixture(scope="module")
def study(toy_npz, ig_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    path = tune_config(toy_npz, os.path.join(ig_run, "teacher.keras"), tmp)
    out = str(tmp / "out")
    real = tune_mod.load_splits
    TestSplitSentinel.touched.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tune_mod, "load_splits",
                   lambda data: dataclasses.replace(real(data), test=TestSplitSentinel()))
        summary = tune(path, out)
    return path, out, summary


def test_tiny_study_never_reads_test_data(study):
    _, _, summary = study
    assert summary["trials"]["complete"] == 3
    assert TestSplitSentinel.touched == []


def test_best_yaml_is_the_best_trial_and_a_valid_config(study, capsys):
    path, out, summary = study
    best = load(out, "faults").best_trial
    assert summary["best"]["trial"] == best.number
    data = yaml.safe_load(open(os.path.join(out, "best.yaml")))
    assert data["student"]["alpha"] == best.params["student.alpha"]
    assert data["student"]["temperature"] == best.params["student.temperature"]
    assert data["student"]["modes"] == ["kd_ig"]
    # Everything else is the input config as written.
    src = yaml.safe_load(open(path))
    assert data["data"] == src["data"] and data["teacher"] == src["teacher"]
    assert main(["check-config", "--config", os.path.join(out, "best.yaml")]) == 0
    cfg = load_config(os.path.join(out, "best.yaml"))
    assert cfg.student.alpha == best.params["student.alpha"]
    metrics = yaml.safe_load(open(os.path.join(out, "trials", str(best.number), "metrics.json")))
    assert metrics["val_accuracy"] == pytest.approx(best.value)
    assert os.path.exists(os.path.join(out, "trials", str(best.number), "student.keras"))
    rows = open(os.path.join(out, "trials.csv")).read().splitlines()
    assert len(rows) == 4 and rows[0].startswith("number,state,val_accuracy,student.alpha")
    md = open(os.path.join(out, "tune.md")).read()
    assert f"Best trial {best.number}" in md and "optuna-dashboard" in md
    assert os.path.getsize(os.path.join(out, "tune_history.png")) > 1000


def test_rerun_of_a_finished_study_runs_nothing(study):
    path, out, _ = study
    before = [(t.number, t.state, t.values) for t in load(out, "faults").trials]
    tune(path, out)
    assert [(t.number, t.state, t.values) for t in load(out, "faults").trials] == before


def _snapshot(out):
    db = open(os.path.join(out, "study.db"), "rb").read()
    return hashlib.sha256(db).hexdigest()


@pytest.mark.parametrize("change, words", [
    ({"student.alpah": {"low": 0.1, "high": 0.5}}, "'student.alpah' is not a config key"),
    ({"student.alpha": {"low": 0.5, "high": 0.5}}, "empty range"),
    ({"student.alpha": {"low": 0.0, "high": 0.5, "log": True}}, "log range needs positive"),
    ({"student.alpha": {"low": 0.1, "high": 2.0}}, "out of range"),
    ({"student.alpha": {"low": 0.1, "high": 0.6, "log": True}}, "another search space"),
])
def test_bad_space_one_line_exit_2_study_intact(study, tmp_path, capsys, change, words):
    path, src, _ = study
    out = str(tmp_path / "out")
    shutil.copytree(src, out)
    before = _snapshot(out)
    data = yaml.safe_load(open(path))
    data["tune"]["space"] = {**SPACE, **change}
    bad = write_config(tmp_path / "bad.yaml", data)
    assert main(["tune", bad, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and err.startswith("tfigkd: error:")
    assert _snapshot(out) == before


@pytest.mark.parametrize("url", ["sqlite:////no/such/folder/s.db", "nosuchdb://x/y"])
def test_bad_storage_one_line_exit_2(study, capsys, tmp_path, url):
    path, _, _ = study
    assert main(["tune", path, "--out", str(tmp_path / "o"), "--storage", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be opened" in err and len(err.splitlines()) == 1


def test_kill_then_resume_retries_the_trial_from_its_epoch(toy_npz, ig_run, tmp_path):
    path = tune_config(toy_npz, os.path.join(ig_run, "teacher.keras"), tmp_path, trials=2,
                       space={"student.alpha": {"choices": [0.2, 0.7]}}, sampler="grid")
    out = str(tmp_path / "out")
    killed = tfigkd_subprocess("tune", path, "--out", out, fault="fit:epoch_end:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    s = load(out, "faults")
    assert [t.state.name for t in s.trials] == ["RUNNING"]
    assert os.path.exists(os.path.join(out, "trials", "0", "work", "state.json"))
    time.sleep(2.5)  # past tune.grace_s: the trial's heartbeat is stale
    assert main(["tune", path, "--out", out]) == 0
    s = load(out, "faults")
    states = {t.number: t.state.name for t in s.trials}
    assert states == {0: "FAIL", 1: "COMPLETE", 2: "COMPLETE"}
    retry = s.trials[1]
    assert retry.params == s.trials[0].params and retry.user_attrs["resumed_from_trial"] == 0
    assert sorted(t.params["student.alpha"] for t in s.trials[1:]) == [0.2, 0.7]
    # The retry continued from the killed trial's epoch-1 checkpoint: one history of 2 epochs.
    m = yaml.safe_load(open(os.path.join(out, "trials", "1", "metrics.json")))
    assert len(m["history"]["val_accuracy"]) == 2


def _worker(path, out, log):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("TFIGKD_FAULT", None)
    return subprocess.Popen([sys.executable, "-m", "tfigkd.cli", "tune", path, "--out", out],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(log, "w"),
                            text=True)


def test_two_workers_share_one_grid_without_duplicates(toy_npz, ig_run, tmp_path):
    grid = {"student.alpha": {"choices": [0.1, 0.9]}, "student.p": {"choices": [0.2, 0.6]}}
    path = tune_config(toy_npz, os.path.join(ig_run, "teacher.keras"), tmp_path, trials=100,
                       space=grid, sampler="grid", pruner="none")
    out = str(tmp_path / "out")
    workers = [_worker(path, out, str(tmp_path / f"w{i}.log")) for i in range(2)]
    for w in workers:
        w.wait(timeout=300)
    logs = [open(tmp_path / f"w{i}.log").read() for i in range(2)]
    assert [w.returncode for w in workers] == [0, 0], logs
    s = load(out, "faults")
    assert all(t.state.name == "COMPLETE" for t in s.trials), ([t.state for t in s.trials], logs)
    # The grid exactly: 4 points (trials capped at the grid's size), each once.
    points = sorted((t.params["student.alpha"], t.params["student.p"]) for t in s.trials)
    assert points == [(0.1, 0.2), (0.1, 0.6), (0.9, 0.2), (0.9, 0.6)]
    ran = [sum(f"Trial {t.number}: val" in log for t in s.trials) for log in logs]
    assert sum(ran) == 4 and min(ran) >= 1, (ran, logs)  # both workers took a share


def test_pruner_prunes_a_hopeless_trial(toy_npz, ig_run, tmp_path):
    # Trial 1 cannot learn (learning rate 0); the median pruner stops it once it trails trial 0.
    path = tune_config(toy_npz, os.path.join(ig_run, "teacher.keras"), tmp_path, trials=2,
                       mode="student", space={"student.train.optimizer.lr": {"choices": [0.02, 0.0]}},
                       enqueue=[{"student.train.optimizer.lr": 0.02},
                                {"student.train.optimizer.lr": 0.0}],
                       sampler="random", pruner="median", pruner_startup_trials=1,
                       pruner_warmup_epochs=0)
    data = yaml.safe_load(open(path))
    data["student"]["train"]["epochs"] = 4
    path = write_config(tmp_path / "p.yaml", data)
    out = str(tmp_path / "out")
    tune(path, out)
    s = load(out, "faults")
    assert [t.state.name for t in s.trials] == ["COMPLETE", "PRUNED"]
    assert s.trials[1].params["student.train.optimizer.lr"] == 0.0
    assert len(s.trials[1].intermediate_values) < 4  # stopped before its last epoch


@pytest.mark.large  # ~20 s; CI's time limit (the single-objective study runs in CI)
def test_pareto_front_of_accuracy_and_macs(toy_npz, ig_run, tmp_path):
    path = tune_config(toy_npz, os.path.join(ig_run, "teacher.keras"), tmp_path, trials=2,
                       mode="student", objectives=["val_accuracy", "macs"], sampler="grid",
                       space={"student.model.kwargs.blocks_removed": {"choices": [15, 16]}})
    out = str(tmp_path / "out")
    summary = tune(path, out)
    s = load(out, "faults")
    assert [d.name for d in s.directions] == ["MAXIMIZE", "MINIMIZE"]
    macs = {t.params["student.model.kwargs.blocks_removed"]: t.values[1] for t in s.trials}
    assert macs[15] > macs[16] > 0  # a deeper student costs more
    front = summary["pareto"]
    assert front and {p["trial"] for p in front} == {t.number for t in s.best_trials}
    for p in front:
        cfg = load_config(p["yaml"])
        assert cfg.student.model.kwargs["blocks_removed"] == p["params"][
            "student.model.kwargs.blocks_removed"]
    assert os.path.exists(os.path.join(out, "tune_pareto.png"))


@pytest.mark.large  # ~40 s: two int8 conversions and LiteRT timings on top of the study
def test_pareto_front_of_accuracy_and_measured_latency(toy_npz, ig_run, tmp_path):
    path = tune_config(toy_npz, os.path.join(ig_run, "teacher.keras"), tmp_path, trials=2,
                       mode="student", objectives=["val_accuracy", "latency_ms"], sampler="grid",
                       space={"student.model.kwargs.blocks_removed": {"choices": [15, 16]}})
    data = yaml.safe_load(open(path))
    data["tune"]["latency_runs"] = 20
    path = write_config(tmp_path / "lat.yaml", data)
    out = str(tmp_path / "out")
    summary = tune(path, out)
    s = load(out, "faults")
    ms = [t.values[1] for t in s.trials]
    assert all(0 < v < 100 for v in ms)
    assert [t.user_attrs["latency_ms"] for t in s.trials] == ms
    cache = json.load(open(os.path.join(out, "latency_cache.json")))
    assert len(cache) == 2  # one measurement per design
    md = open(os.path.join(out, "tune.md")).read()
    assert "Pareto front (accuracy vs int8 latency (ms))" in md
    assert summary["pareto"]


def test_withheld_split_fails_on_any_data_use():
    import copy

    from tfigkd.experiments.tune import WithheldSplit

    w = copy.deepcopy(WithheldSplit())  # copying the container is not reading data
    for use in (lambda: w.x, lambda: w.y, lambda: len(w), lambda: w.take([0])):
        with pytest.raises(RuntimeError, match="withheld"):
            use()


def _teacher_at(path, splits, size):
    """A small logits CNN that sees the data resized to ``size`` (unit inputs), trained briefly."""
    import keras

    from tfigkd.models.teacher_io import resize_images

    keras.utils.set_random_seed(0)
    inp = keras.Input((*size, splits.input_shape[-1]))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(splits.num_classes)(x))
    model.compile(keras.optimizers.Adam(0.03),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(resize_images(splits.train.x, size) / 255.0, splits.train.y, epochs=3, verbose=0)
    model.save(path)
    return model


def test_teacher_at_its_own_resolution_trains_trials(toy_npz, tmp_path):
    """teacher.input_size in a study: IG maps, cached logits (kd_ig) and online KD (kd)."""
    import numpy as np

    from tfigkd.experiments.attribution import load_ig_maps
    from tfigkd.data import load_splits
    from tfigkd.models.teacher_io import resize_images

    from tfigkd.config import config_from_dict

    splits = load_splits(config_from_dict(tiny_run_config(toy_npz)).data)
    assert splits.input_shape == (12, 12, 1)
    teacher = _teacher_at(str(tmp_path / "teacher20.keras"), splits, (20, 20))
    one = {"space": {"student.alpha": {"choices": [0.5]}}, "sampler": "grid", "trials": 1,
           "pruner": "none"}
    for mode, teacher_mode in (("kd_ig", "cached"), ("kd", "online")):
        path = tune_config(toy_npz, str(tmp_path / "teacher20.keras"), tmp_path,
                           name=f"{mode}.yaml", mode=mode, **one)
        data = yaml.safe_load(open(path))
        data["teacher"].update(input_size=[20, 20], train={"input_norm": "unit"})
        data["student"]["teacher_mode"] = teacher_mode
        data["student"]["train"]["epochs"] = 1
        path = write_config(path, data)
        out = str(tmp_path / mode)
        summary = tune(path, out)
        assert summary["trials"]["complete"] == 1, mode
        hist = yaml.safe_load(open(os.path.join(out, "trials", "0", "metrics.json")))["history"]
        assert np.isfinite(hist["kd"]).all() and hist["kd"][0] > 0, mode  # KD was trained
    # kd_ig: cached logits are the teacher's on training images resized to 20x20; IG maps
    # (computed at 20x20) are stored at the student's 12x12.
    with np.load(os.path.join(str(tmp_path / "kd_ig"), "teacher_logits", "logits.npz")) as z:
        index, logits = z["index"], z["logits"]
    np.testing.assert_array_equal(index, splits.train.index)
    want = teacher.predict(resize_images(splits.train.x, (20, 20)) / 255.0, verbose=0)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
    maps = load_ig_maps(load_config(str(tmp_path / "kd_ig.yaml")), str(tmp_path / "kd_ig"), splits)
    assert maps.shape == (len(splits.train), 12, 12)
    np.testing.assert_allclose(maps.reshape(len(maps), -1).sum(1), 1.0, rtol=1e-4)


def test_top_k_trials_pack_the_shared_logits_at_their_own_temperature(toy_npz, ig_run, tmp_path,
                                                                      monkeypatch):
    """student.logit_top_k in a study: the cache holds all logits; each trial gets its top k
    packed at the temperature it samples (not full logits read as packed rows)."""
    import numpy as np

    from tfigkd.distill.topk import pack_top_k
    from tfigkd.experiments import student as student_mod

    seen = []
    real = student_mod.build_distillation

    def spy(cfg, splits, mode, seed, teacher=None, maps=None, cached=None, **kw):
        seen.append((cfg.student.temperature, None if cached is None else np.array(cached)))
        return real(cfg, splits, mode, seed, teacher, maps, cached, **kw)

    monkeypatch.setattr(student_mod, "build_distillation", spy)
    path = tune_config(toy_npz, os.path.join(ig_run, "teacher.keras"), tmp_path, mode="kd",
                       trials=2, sampler="grid", pruner="none",
                       space={"student.temperature": {"choices": [2.0, 5.0]}})
    data = yaml.safe_load(open(path))
    data["student"].update(logit_top_k=2)
    data["student"]["train"]["epochs"] = 1
    out = str(tmp_path / "topk")
    assert tune(write_config(path, data), out)["trials"]["complete"] == 2
    with np.load(os.path.join(out, "teacher_logits", "logits.npz")) as z:
        full = z["logits"]
    assert full.shape[1] == 3  # the shared cache keeps every class
    assert sorted(t for t, _ in seen) == [2.0, 5.0]
    for temperature, cached in seen:
        np.testing.assert_array_equal(cached, pack_top_k(full, 2, temperature))
    assert not np.array_equal(seen[0][1], seen[1][1])
