"""Helpers for the cross-module tests: tiny configs and the CLI in a fresh process."""

import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
