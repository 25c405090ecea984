"""Helpers for tests and examples: small synthetic datasets written to disk."""

from __future__ import annotations

import os

import numpy as np


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
