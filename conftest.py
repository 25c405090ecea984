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

import pytest  # noqa: E402


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
