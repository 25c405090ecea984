import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Decoded image-folder caches of the tests go to a temporary folder, not ~/.cache.
if "TFIGKD_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["TFIGKD_CACHE_DIR"] = tempfile.mkdtemp(prefix="tfigkd-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TFIGKD_CACHE_DIR"], True)

import shutil  # noqa: E402

import pytest  # noqa: E402

# The fixture layer of every test: the module tests beside the modules (tfigkd/**/*_test.py)
# and the cross-module ones (tests/) see these. Each is built once per test run; the
# session ones are read-only, and a test that writes takes a copy (``run_copy``).


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory):
    """A synthetic 12x12x1, 3-class ``numpy`` data source (160 train, 60 test images)."""
    from tfigkd.testing import write_npz

    return write_npz(str(tmp_path_factory.mktemp("data") / "toy.npz"), n_train=160, n_test=60)


@pytest.fixture(scope="session")
def tiny_yaml(toy_npz, tmp_path_factory):
    """``tiny_run_config(toy_npz)`` written as a YAML file."""
    from tfigkd.testing import tiny_run_config, write_config

    return write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", tiny_run_config(toy_npz))


@pytest.fixture(scope="session")
def ig_run(tiny_yaml, tmp_path_factory):
    """A run folder with a trained teacher and a finished 3-shard IG store (read-only: copy it)."""
    from tfigkd.config import load_config
    from tfigkd.experiments.attribution import precompute_ig
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


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """A tiny trained classifier, its config and data, shared by export/bench/compress tests.

    Returns:
        (cfg, splits, model_path): the model is a 2-feature-block network on
        12x12x1 toy images with 3 classes, trained for 5 epochs (~10 s).
    """
    from tfigkd.config import config_from_dict
    from tfigkd.data import load_splits
    from tfigkd.experiments.teacher import train_teacher
    from tfigkd.testing import tiny_config_dict, write_npz

    tmp = tmp_path_factory.mktemp("tiny")
    cfg = config_from_dict(tiny_config_dict(
        write_npz(str(tmp / "toy.npz"), n_train=160, n_test=60), epochs=5))
    metrics = train_teacher(cfg, str(tmp / "run"))
    return cfg, load_splits(cfg.data), metrics["model_path"]
