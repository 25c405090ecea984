"""The helpers of every test (module tests and tests/) and of examples.

Small synthetic datasets written to disk, tiny configs that run in seconds, and
the CLI in a fresh process. The fixtures built from them are in the root
``conftest.py``, which every test sees.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

# The folder holding the tfigkd package (the repository, in a checkout): the CLI
# subprocesses run there, so they import this same tfigkd.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_images(n, shape=(12, 12, 1), num_classes=3, seed=0):
    """Learnable toy images: each class brightens its own horizontal band.

    Returns:
        (x uint8 (n, H, W, C), y int64 (n,)), every class equally represented.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    h = shape[0]
    x = rng.integers(0, 80, size=(n, *shape))
    band = max(1, h // num_classes)
    for c in range(num_classes):
        x[y == c, c * band:(c + 1) * band] += 150
    return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)


def write_npz(path, n_train=120, n_test=60, shape=(12, 12, 1), num_classes=3, seed=0):
    """Writes a synthetic ``numpy`` data source; returns ``path``."""
    xtr, ytr = synthetic_images(n_train, shape, num_classes, seed)
    xte, yte = synthetic_images(n_test, shape, num_classes, seed + 1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
             class_names=np.array([f"class{i}" for i in range(num_classes)]))
    return path


def tiny_config_dict(npz_path, epochs=1):
    """A config dict for a seconds-long teacher run on a synthetic npz."""
    return {
        "name": "test",
        "data": {"source": "numpy", "path": str(npz_path), "val_fraction": 0.25},
        "teacher": {
            "model": {"name": "truncated_student", "kwargs": {"blocks_removed": 16}},
            "train": {"epochs": epochs, "batch_size": 16, "verbose": 0,
                      "augment": {"crop_pad": 1, "flip": False},
                      "optimizer": {"name": "adam", "lr": 0.01, "schedule": "constant"}},
        },
    }


def checkpoint_arrays(path):
    """Every array of a Keras ``.weights.h5`` checkpoint (model and optimiser), by name."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def tiny_run_config(npz_path, **changes):
    """A config dict for a whole ``tfigkd run`` in seconds: 2-block teacher, IG, two modes."""
    cfg = {
        "name": "faults",
        "data": {"source": "numpy", "path": str(npz_path), "val_fraction": 0.25},
        "teacher": {
            "model": {"name": "truncated_student", "kwargs": {"blocks_removed": 16,
                                                              "dropout": 0.2}},
            "train": {"epochs": 3, "batch_size": 16, "verbose": 0,
                      "augment": {"crop_pad": 1, "flip": True},
                      "optimizer": {"name": "adam", "lr": 0.01, "schedule": "constant"}},
        },
        "ig": {"n_steps": 8, "shard_size": 40, "batch_size": 16, "internal_batch_size": 64},
        "student": {"model": {"name": "truncated_student", "kwargs": {"blocks_removed": 16}},
                    "modes": ["student", "kd_ig"], "p": 0.5,
                    "train": {"epochs": 2, "batch_size": 16, "verbose": 0,
                              "augment": {"crop_pad": 1, "flip": True}}},
        "export": {"int8": False},
    }
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def write_config(path, data):
    """Writes config dict ``data`` as YAML to ``path``; returns the path as a string."""
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


def tfigkd_subprocess(*args, fault=None, timeout=300, env=None, wait=True):
    """Runs the CLI in a fresh process (optionally with a planted SIGKILL); returns the result.

    ``env``: extra environment variables (e.g. ``TFIGKD_CPU_DEVICES``, ``TF_CONFIG``);
    ``wait=False`` returns the running ``Popen`` instead.
    """
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", **(env or {}))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user would have it
    env.pop("TFIGKD_FAULT", None)
    if fault:
        env["TFIGKD_FAULT"] = fault
    argv = [sys.executable, "-m", "tfigkd.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
