import os

import numpy as np
import pytest

from tfigkd.experiments.attribution import load_ig_maps, precompute_ig
from tfigkd.attribution.store import StoreMismatchError
from tfigkd.cli import main
from tfigkd.config import config_from_dict
from tfigkd.data import load_splits
from tfigkd.experiments.teacher import train_teacher
from tfigkd.testing import tiny_config_dict, write_npz


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ig")
    d = tiny_config_dict(write_npz(str(tmp / "toy.npz"), n_train=100, n_test=20), epochs=2)
    d["ig"] = {"n_steps": 16, "batch_size": 8, "internal_batch_size": 64, "shard_size": 30}
    cfg = config_from_dict(d)
    out = str(tmp / "run")
    train_teacher(cfg, out)
    return cfg, out, d


def test_precompute_end_to_end(run):
    cfg, out, _ = run
    splits = load_splits(cfg.data)
    man = precompute_ig(cfg, out, splits=splits, progress=False)
    n = len(splits.train)
    assert man["count"] == n and len(man["shards"]) == -(-n // 30)
    assert man["completeness"]["median_rel_error"] < 0.05
    maps = load_ig_maps(cfg, out, splits)
    assert maps.shape == (n, 12, 12) and maps.dtype == np.float16
    assert np.all(maps >= 0) and maps.reshape(n, -1).max(1).min() > 0
    # Same store reused, not recomputed.
    before = os.path.getmtime(os.path.join(out, "ig", "manifest.json"))
    precompute_ig(cfg, out, splits=splits, progress=False)
    assert os.path.getmtime(os.path.join(out, "ig", "manifest.json")) == before


def test_other_settings_are_refused(run):
    cfg, out, d = run
    splits = load_splits(cfg.data)
    precompute_ig(cfg, out, splits=splits, progress=False)
    d2 = {**d, "ig": {**d["ig"], "n_steps": 8}}
    with pytest.raises(StoreMismatchError, match="settings"):
        load_ig_maps(config_from_dict(d2), out, splits)


def test_cli_precompute_and_verify(run, tmp_path, capsys):
    import yaml

    cfg, out, d = run
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(d))
    assert main(["precompute-ig", "--config", str(path), "--out", out, "--verify"]) == 0
    assert "IG store OK: 76 maps" in capsys.readouterr().out
    assert main(["precompute-ig", "--config", str(path), "--out", str(tmp_path / "none")]) == 2
    assert "train-teacher" in capsys.readouterr().err


def test_sharded_workers_merge_and_a_corrupt_shard_is_not_hidden(run, tmp_path):
    import glob
    import shutil

    cfg, out, _ = run
    splits = load_splits(cfg.data)
    out2 = str(tmp_path / "sharded")
    os.makedirs(out2)
    shutil.copy(os.path.join(out, "teacher.keras"), out2)
    assert precompute_ig(cfg, out2, splits=splits, shard=(0, 2), progress=False) is None
    shard0 = sorted(glob.glob(os.path.join(out2, "ig", "*.tfrecord.gz")))[0]
    with open(shard0, "r+b") as f:
        f.seek(40)
        f.write(b"\xff\xfe")
    # The last worker merges; a damaged shard must surface here, not as "still missing".
    with pytest.raises(StoreMismatchError):
        precompute_ig(cfg, out2, splits=splits, shard=(1, 2), progress=False)
