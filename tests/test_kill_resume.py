"""kill -9 at several points of train-teacher, precompute-ig and a student run, then resume:
the result must be bit-identical to an uninterrupted run. And one writer per folder.

Kills are real SIGKILLs, planted with ``TFIGKD_FAULT=point:n`` (see
``tfigkd.faults``), so they land at reproducible moments: after an epoch's
checkpoint, between a shard file and its sidecar, in the middle of an
atomic write.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tfigkd.testing import ROOT, tfigkd_subprocess
from tfigkd.cli import main
from tfigkd.testing import checkpoint_arrays


def assert_same_checkpoint(a, b):
    a, b = checkpoint_arrays(a), checkpoint_arrays(b)
    assert a.keys() == b.keys()
    assert any(k.startswith("optimizer") for k in a)  # optimiser state is compared too
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def teacher_reference(tiny_yaml, tmp_path_factory):
    """An uninterrupted train-teacher run, in its own process like the killed ones."""
    out = str(tmp_path_factory.mktemp("ref") / "run")
    ok(tfigkd_subprocess("train-teacher", "--config", tiny_yaml, "--out", out))
    return out


# The two mid-write faults (~15 s each) run with `-m large`; CI keeps the epoch-end one
# (and teacher_test's in-process resume test) to stay within its time limit.
@pytest.mark.parametrize("fault", [
    "fit:epoch_end:1",            # after epoch 1's checkpoint and state.json
    pytest.param("atomic:before_replace:3",    # mid-write of epoch 1's best model / checkpoint
                 marks=pytest.mark.large),
    pytest.param("atomic:before_replace:8",    # mid-write in epoch 2
                 marks=pytest.mark.large),
])
def test_train_teacher_kill9_then_resume_is_exact(fault, tiny_yaml, teacher_reference, tmp_path):
    out = str(tmp_path / "run")
    killed = tfigkd_subprocess("train-teacher", "--config", tiny_yaml, "--out", out, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(out, "teacher_metrics.json"))
    ok(tfigkd_subprocess("train-teacher", "--config", tiny_yaml, "--out", out))
    assert_same_checkpoint(os.path.join(teacher_reference, "work/teacher/epoch-0003.weights.h5"),
                           os.path.join(out, "work/teacher/epoch-0003.weights.h5"))
    assert not glob.glob(os.path.join(out, "**", ".tmp-*"), recursive=True)


def test_resume_with_other_architecture_is_refused(tiny_yaml, tmp_path, capsys):
    out = str(tmp_path / "run")
    killed = tfigkd_subprocess("train-teacher", "--config", tiny_yaml, "--out", out,
                               fault="fit:epoch_end:1")
    assert killed.returncode == -signal.SIGKILL
    state = open(os.path.join(out, "work/teacher/state.json")).read()
    rc = main(["train-teacher", "--config", tiny_yaml, "--out", out,
               "--set", "teacher.model.kwargs.blocks_removed=15"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "partial teacher run (epoch 1 of 3) started with other settings" in err
    assert "teacher.model.kwargs.blocks_removed: 16 -> 15" in err
    assert open(os.path.join(out, "work/teacher/state.json")).read() == state


def _shards(folder):
    return {os.path.basename(p): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(folder, "ig", "shard-*")))}


def test_precompute_ig_kill9_then_resume_gives_same_bytes(ig_run, tiny_yaml, tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    shutil.copy(os.path.join(ig_run, "teacher.keras"), out)
    killed = tfigkd_subprocess("precompute-ig", "--config", tiny_yaml, "--out", out,
                               fault="ig:shard_written:2")
    assert killed.returncode == -signal.SIGKILL
    # Shard 1's file is written but not its sidecar: it does not count as done.
    assert os.path.exists(os.path.join(out, "ig", "shard-00001-of-00003.tfrecord.gz"))
    assert not os.path.exists(os.path.join(out, "ig", "shard-00001-of-00003.json"))
    ok(tfigkd_subprocess("precompute-ig", "--config", tiny_yaml, "--out", out))
    ok(tfigkd_subprocess("precompute-ig", "--config", tiny_yaml, "--out", out, "--verify"))
    # Same bytes as the reference store computed in this (other) process.
    ref, got = _shards(ig_run), _shards(out)
    assert ref.keys() == got.keys() and len(ref) == 6
    for name in ref:
        assert ref[name] == got[name], name


def test_student_run_kill9_then_resume_is_exact(ig_run, tiny_yaml, tmp_path):
    # Both runs start from the shared teacher and IG store (the same recipe: `run`
    # reuses them), so the processes train only the students.
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    for out in (whole, cut):
        shutil.copytree(ig_run, out)
    ok(tfigkd_subprocess("run", tiny_yaml, "--out", whole))
    # Student: epoch ends 1-2; the 3rd is kd_ig's first epoch.
    killed = tfigkd_subprocess("run", tiny_yaml, "--out", cut, fault="fit:epoch_end:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert os.path.exists(os.path.join(cut, "students", "student-s0", "metrics.json"))
    assert not os.path.exists(os.path.join(cut, "students", "kd_ig-s0", "metrics.json"))
    ok(tfigkd_subprocess("run", tiny_yaml, "--out", cut))
    for mode in ("student", "kd_ig"):
        assert_same_checkpoint(
            os.path.join(whole, "students", f"{mode}-s0", "work", "epoch-0002.weights.h5"),
            os.path.join(cut, "students", f"{mode}-s0", "work", "epoch-0002.weights.h5"))


# ------------------------------------------------------------------- locks

def _hold_lock(folder, name=".tfigkd.lock"):
    """A process that holds a folder's lock (without importing TensorFlow) until killed."""
    code = ("import sys, time\nfrom tfigkd.lock import folder_lock\n"
            "with folder_lock(sys.argv[1], sys.argv[2]):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, folder, name], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_then_dead_lock_is_taken_over(tiny_yaml, tmp_path, capsys,
                                                                caplog):
    out = str(tmp_path / "run")
    holder = _hold_lock(out)
    try:
        for argv in (["train-teacher", "--config", tiny_yaml, "--out", out],
                     ["run", tiny_yaml, "--out", out],
                     ["precompute-ig", "--config", tiny_yaml, "--out", out]):
            rc = main(argv)
            err = capsys.readouterr().err
            assert rc == 2, err
            assert f"is being written by PID {holder.pid}" in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not os.path.exists(os.path.join(out, "work"))  # the refused writers did nothing
    caplog.set_level("INFO", logger="tfigkd.lock")
    assert main(["train-teacher", "--config", tiny_yaml, "--out", out]) == 0
    assert f"left by PID {holder.pid}" in caplog.text
    assert os.path.exists(os.path.join(out, "teacher_metrics.json"))


def test_ig_workers_lock_their_own_part(ig_run, tiny_yaml, tmp_path, capsys):
    out = str(tmp_path / "run")
    os.makedirs(out)
    shutil.copy(os.path.join(ig_run, "teacher.keras"), out)
    holder = _hold_lock(os.path.join(out, "ig"), ".tfigkd-ig-worker-0-of-2.lock")
    try:
        rc = main(["precompute-ig", "--config", tiny_yaml, "--out", out, "--shard", "0/2"])
        assert rc == 2 and f"PID {holder.pid}" in capsys.readouterr().err
        # Another worker's part is free.
        assert main(["precompute-ig", "--config", tiny_yaml, "--out", out, "--shard", "1/2"]) == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "ig", "*.json"))) == [
        "shard-00001-of-00003.json"]


def test_lock_is_reentrant_and_released(tmp_path):
    from tfigkd.lock import FolderLockedError, folder_lock

    folder = str(tmp_path / "f")
    with folder_lock(folder):
        with folder_lock(folder):
            pass
        # Still held after the inner block: another process is refused.
        probe = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom tfigkd.lock import folder_lock\n"
             "with folder_lock(sys.argv[1]): pass\n", folder],
            capture_output=True, text=True, cwd=ROOT)
        assert probe.returncode != 0 and "FolderLockedError" in probe.stderr
    with folder_lock(folder):  # released: can be taken again
        pass
    with pytest.raises(FolderLockedError):
        holder = _hold_lock(folder)
        try:
            with folder_lock(folder):
                pass
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
