"""Teacher training (docs/method.md section 1): ``tfigkd train-teacher``."""

from __future__ import annotations

import logging
import os
import time

import keras

import tfigkd
from tfigkd.config import RUNTIME_KEYS, config_to_dict
from tfigkd.data import load_splits
from tfigkd import distribute
from tfigkd.experiments.common import (classification_compile, eval_datasets,
                                       evaluate_accuracy, precise_bn_data, steps_per_epoch,
                                       training_data)
from tfigkd.experiments.fit import fit_resumable
from tfigkd.freshness import check_same_recipe
from tfigkd.experiments.optim import build_optimizer
from tfigkd.io import file_sha256, read_json, write_json
from tfigkd.layout import LOGS_DIR, TEACHER_FILE, TEACHER_METRICS as METRICS_FILE, WORK_DIR, teacher_path
from tfigkd.models import (build_model, check_fits_data, count_macs, load_model_file,
                           trainable_params)

log = logging.getLogger(__name__)


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
    strategy = distribute.strategy_for(tcfg)  # before any op: multi-worker needs it first
    splits = splits or load_splits(cfg.data)
    with distribute.worker_lock(out_dir, strategy):
        return _train_teacher(cfg, out_dir, splits, verbose, t_start)


def teacher_input_shape(cfg, splits):
    """(H, W, C) the teacher takes: ``teacher.input_size`` if set, else the data's."""
    if cfg.teacher.input_size:
        return (*map(int, cfg.teacher.input_size), splits.input_shape[-1])
    return tuple(splits.input_shape)


def teacher_recipe(cfg, splits):
    """What a teacher depends on: its settings (not verbosity), the data and, if adopted, the file."""
    d = config_to_dict(cfg.teacher)
    for key in RUNTIME_KEYS:
        d["train"].pop(key, None)
    recipe = {"fingerprint": splits.fingerprint, "teacher": d,
              "input_shape": list(splits.input_shape), "num_classes": splits.num_classes}
    if cfg.teacher.path and os.path.exists(teacher_path(cfg, None)):
        recipe["teacher_sha256"] = file_sha256(teacher_path(cfg, None))
    return recipe


def _train_teacher(cfg, out_dir, splits, verbose, t_start):
    from tfigkd.data.unlabeled import labeled_only

    # A teacher learns from labels: unlabelled training images (data.unlabeled) are
    # for the students' KD term only. The recipe keeps the full split's fingerprint.
    recipe_splits, splits = splits, labeled_only(splits)
    tcfg = cfg.teacher.train
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    model_path = os.path.join(out_dir, TEACHER_FILE)
    recipe = teacher_recipe(cfg, recipe_splits)
    if os.path.exists(metrics_path) and (cfg.teacher.path or os.path.exists(model_path)):
        done = read_json(metrics_path)
        check_same_recipe(done.get("recipe", _legacy_recipe(done)), recipe, out_dir,
                          "a teacher trained", "use another --out folder, or delete it to retrain")
        log.info("Teacher already trained: %s (test accuracy %.4f); reusing it.",
                 done["model_path"], done["test_accuracy"])
        return done

    if cfg.teacher.path:
        return _adopt_teacher(cfg, out_dir, splits, metrics_path, recipe)
    keras.utils.set_random_seed(tcfg.seed)
    size = cfg.teacher.input_size
    steps = steps_per_epoch(len(splits.train), tcfg.batch_size)
    with distribute.scope(tcfg):
        model = build_model(cfg.teacher.model.name, teacher_input_shape(cfg, splits),
                            splits.num_classes, **cfg.teacher.model.kwargs)
        classification_compile(model, build_optimizer(tcfg.optimizer, tcfg.epochs, steps))
    val_ds, test_ds = eval_datasets(splits, tcfg, image_size=size)
    state = fit_resumable(
        model, training_data(splits, tcfg, tcfg.seed, image_size=size), val_ds, epochs=tcfg.epochs,
        steps_per_epoch=steps, work_dir=os.path.join(out_dir, WORK_DIR, "teacher"),
        best_path=model_path, recipe=recipe, what="teacher",
        tensorboard_dir=os.path.join(out_dir, LOGS_DIR, "teacher"), verbose=verbose,
        bn_data=precise_bn_data(splits, tcfg, tcfg.seed, image_size=size))
    if not distribute.is_chief(model.distribute_strategy):
        return distribute.worker_result(state, model)  # the chief writes the results

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
        "input_shape": list(teacher_input_shape(cfg, splits)),
        "input_norm": tcfg.input_norm,
        "mean": list(splits.mean),
        "std": list(splits.std),
        "class_names": splits.class_names,
        "fingerprint": splits.fingerprint,
        "history": state["history"],
        "weights_sha256": distribute.weights_digest(best),
        "recipe": recipe,
        "config": config_to_dict(cfg),
        "tfigkd_version": tfigkd.__version__,
    }
    write_json(metrics_path, metrics)
    log.info("Teacher: val accuracy %.4f (epoch %s), test accuracy %.4f, %s params, %s MACs, "
             "%.0f s training.", metrics["val_accuracy"], metrics["best_epoch"], test_acc,
             f"{metrics['trainable_params']:,}", f"{metrics['macs']:,}", metrics["train_seconds"])
    return metrics


def _legacy_recipe(done):
    """The recipe of a teacher_metrics.json written before recipes were recorded (or None)."""
    old = done.get("config", {}).get("teacher")
    if old is None:
        return None
    old = dict(old, train={k: v for k, v in old["train"].items() if k != "verbose"})
    return {"fingerprint": done.get("fingerprint"), "teacher": old,
            "input_shape": done.get("input_shape"), "num_classes": len(done.get("class_names", []))}


def _adopt_teacher(cfg, out_dir, splits, metrics_path, recipe):
    """Uses the trained teacher at ``teacher.path``: checks and evaluates it, trains nothing."""
    path = teacher_path(cfg, out_dir)
    model = load_model_file(path, "teacher.path")
    check_fits_data(model, splits, f"Teacher {path}", cfg.teacher.input_size)
    tcfg = cfg.teacher.train
    val_ds, test_ds = eval_datasets(splits, tcfg, image_size=cfg.teacher.input_size)
    metrics = {
        "model": model.name, "model_path": path, "adopted": True,
        "val_accuracy": evaluate_accuracy(model, val_ds),
        "test_accuracy": evaluate_accuracy(model, test_ds),
        "best_epoch": None, "epochs": 0, "trainable_params": trainable_params(model),
        "macs": count_macs(model), "train_seconds": 0.0, "wall_seconds_this_run": 0.0,
        "dataset": splits.name, "sizes": splits.sizes(),
        "input_shape": list(teacher_input_shape(cfg, splits)), "input_norm": tcfg.input_norm,
        "mean": list(splits.mean), "std": list(splits.std),
        "class_names": splits.class_names, "fingerprint": splits.fingerprint, "history": {},
        "recipe": recipe, "config": config_to_dict(cfg), "tfigkd_version": tfigkd.__version__,
    }
    write_json(metrics_path, metrics)
    log.info("Teacher %s (not retrained): val accuracy %.4f, test accuracy %.4f.", path,
             metrics["val_accuracy"], metrics["test_accuracy"])
    return metrics
