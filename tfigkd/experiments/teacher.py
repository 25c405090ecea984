"""Teacher training (METHOD.md section 1): ``tfigkd train-teacher``."""

from __future__ import annotations

import os
import time

import keras

import tfigkd
from tfigkd.config import config_diff, config_to_dict
from tfigkd.data import load_splits
from tfigkd.errors import UserError
from tfigkd.experiments.common import (classification_compile, datasets_for,
                                       evaluate_accuracy, steps_per_epoch)
from tfigkd.experiments.fit import fit_resumable
from tfigkd.experiments.optim import build_optimizer
from tfigkd.io import read_json, write_json
from tfigkd.models import build_model, check_fits_data, count_macs, trainable_params

from tfigkd.layout import TEACHER_FILE, TEACHER_METRICS as METRICS_FILE, teacher_path


def train_teacher(cfg, out_dir, splits=None, verbose=None):
    """Trains (or resumes, or reuses) the teacher of an experiment config.

    Args:
        cfg: An ``ExperimentConfig``.
        out_dir: Output folder. Gets ``teacher.keras`` (best on validation),
            ``teacher_metrics.json``, TensorBoard logs under ``logs/teacher``
            and the resumable state under ``work/teacher``.
        splits: Pre-loaded ``SplitData`` (loaded from ``cfg.data`` if None).
        verbose: Overrides ``cfg.teacher.train.verbose``.

    Returns:
        The metrics dict that is also written to ``teacher_metrics.json``.

    Raises:
        ValueError: If a finished run in ``out_dir`` used different data.
    """
    t_start = time.time()
    tcfg = cfg.teacher.train
    verbose = tcfg.verbose if verbose is None else verbose
    splits = splits or load_splits(cfg.data)
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    model_path = os.path.join(out_dir, TEACHER_FILE)
    if os.path.exists(metrics_path) and os.path.exists(model_path):
        done = read_json(metrics_path)
        if done.get("fingerprint") != splits.fingerprint:
            raise UserError(
                f"{out_dir} holds a teacher trained on other data (fingerprint "
                f"{done.get('fingerprint', '?')[:12]} vs {splits.fingerprint[:12]}); "
                "use another --out folder or delete it.")
        def recipe(c):
            c = dict(c)
            c["train"] = {k: v for k, v in c["train"].items() if k != "verbose"}
            return c

        old = done.get("config", {}).get("teacher")
        diff = config_diff(recipe(old), recipe(config_to_dict(cfg.teacher)), "teacher") \
            if old else ""
        if diff:
            raise UserError(f"{out_dir} holds a teacher trained with other settings ({diff}); "
                            "use another --out folder, or delete it to retrain.")
        if verbose:
            print(f"Teacher already trained: {model_path} "
                  f"(test accuracy {done['test_accuracy']:.4f}); reusing it.")
        return done

    if cfg.teacher.path:
        return _adopt_teacher(cfg, out_dir, splits, metrics_path, verbose)
    keras.utils.set_random_seed(tcfg.seed)
    model = build_model(cfg.teacher.model.name, splits.input_shape, splits.num_classes,
                        **cfg.teacher.model.kwargs)
    train_ds, val_ds, test_ds = datasets_for(splits, tcfg)
    optimizer = build_optimizer(tcfg.optimizer, tcfg.epochs,
                                steps_per_epoch(len(splits.train), tcfg.batch_size))
    classification_compile(model, optimizer)
    state = fit_resumable(
        model, train_ds, val_ds, epochs=tcfg.epochs,
        work_dir=os.path.join(out_dir, "work", "teacher"), best_path=model_path,
        tensorboard_dir=os.path.join(out_dir, "logs", "teacher"), verbose=verbose)

    best = keras.models.load_model(model_path)
    test_acc = evaluate_accuracy(best, test_ds)
    metrics = {
        "model": cfg.teacher.model.name,
        "model_path": os.path.abspath(model_path),
        "val_accuracy": state["best"],
        "test_accuracy": test_acc,
        "best_epoch": state["best_epoch"],
        "epochs": tcfg.epochs,
        "trainable_params": trainable_params(best),
        "macs": count_macs(best),
        "train_seconds": state["train_seconds"],
        "wall_seconds_this_run": time.time() - t_start,
        "dataset": splits.name,
        "sizes": splits.sizes(),
        "input_shape": list(splits.input_shape),
        "input_norm": tcfg.input_norm,
        "mean": list(splits.mean),
        "std": list(splits.std),
        "class_names": splits.class_names,
        "fingerprint": splits.fingerprint,
        "history": state["history"],
        "config": config_to_dict(cfg),
        "tfigkd_version": tfigkd.__version__,
    }
    write_json(metrics_path, metrics)
    if verbose:
        print(f"Teacher: val accuracy {metrics['val_accuracy']:.4f} (epoch "
              f"{metrics['best_epoch']}), test accuracy {test_acc:.4f}, "
              f"{metrics['trainable_params']:,} params, {metrics['macs']:,} MACs, "
              f"{metrics['train_seconds']:.0f} s training.")
    return metrics


def _adopt_teacher(cfg, out_dir, splits, metrics_path, verbose):
    """Uses the trained teacher at ``teacher.path``: checks and evaluates it, trains nothing."""
    path = teacher_path(cfg, out_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"teacher.path {path} does not exist; point it at a trained "
                                "teacher .keras or remove it to train one.")
    model = keras.models.load_model(path)
    check_fits_data(model, splits, f"Teacher {path}")
    tcfg = cfg.teacher.train
    _, val_ds, test_ds = datasets_for(splits, tcfg)
    metrics = {
        "model": cfg.teacher.model.name, "model_path": path, "adopted": True,
        "val_accuracy": evaluate_accuracy(model, val_ds),
        "test_accuracy": evaluate_accuracy(model, test_ds),
        "best_epoch": None, "epochs": 0, "trainable_params": trainable_params(model),
        "macs": count_macs(model), "train_seconds": 0.0, "wall_seconds_this_run": 0.0,
        "dataset": splits.name, "sizes": splits.sizes(), "input_shape": list(splits.input_shape),
        "input_norm": tcfg.input_norm, "mean": list(splits.mean), "std": list(splits.std),
        "class_names": splits.class_names, "fingerprint": splits.fingerprint, "history": {},
        "config": config_to_dict(cfg), "tfigkd_version": tfigkd.__version__,
    }
    write_json(metrics_path, metrics)
    if verbose:
        print(f"Teacher {path} (not retrained): val accuracy {metrics['val_accuracy']:.4f}, "
              f"test accuracy {metrics['test_accuracy']:.4f}.")
    return metrics
