"""Fixtures shared by the cross-module tests: tiny data, configs and run folders."""

import shutil

import pytest

from helpers import tiny_run_config, write_config
from tfigkd.testing import write_npz


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory):
    return write_npz(str(tmp_path_factory.mktemp("data") / "toy.npz"), n_train=160, n_test=60)


@pytest.fixture(scope="session")
def tiny_yaml(toy_npz, tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", tiny_run_config(toy_npz))


@pytest.fixture(scope="session")
def ig_run(tiny_yaml, tmp_path_factory):
    """A run folder with a trained teacher and a finished 3-shard IG store (read-only: copy it)."""
    from tfigkd.experiments.attribution import precompute_ig
    from tfigkd.config import load_config
    from tfigkd.experiments.teacher import train_teacher

    out = str(tmp_path_factory.mktemp("ig_run") / "run")
    cfg = load_config(tiny_yaml)
    train_teacher(cfg, out)
    precompute_ig(cfg, out, progress=False)
    return out


@pytest.fixture
def run_copy(ig_run, tmp_path):
    """A private copy of ``ig_run`` that a test may damage."""
    dst = str(tmp_path / "run")
    shutil.copytree(ig_run, dst)
    return dst
