"""Student training in one of the eight ablation modes (METHOD.md sections 2, 4-6)."""

from __future__ import annotations

import os
import time

import keras

from tfigkd.augment import overlay_transform
from tfigkd.config import config_diff, config_to_dict
from tfigkd.data import make_dataset
from tfigkd.distill import Distiller
from tfigkd.errors import UserError
from tfigkd.experiments.common import evaluate_accuracy, steps_per_epoch
from tfigkd.experiments.fit import fit_resumable, save_inference_copy
from tfigkd.experiments.optim import build_optimizer
from tfigkd.io import read_json, write_json
from tfigkd.layout import student_dir
from tfigkd.models import build_model, count_macs, trainable_params


def mode_weights(mode, scfg):
    """(alpha, p, gamma) of a mode: which of KD, IG overlay and AT are on."""
    parts = set(mode.split("_"))
    return (scfg.alpha if "kd" in parts else 0.0,
            scfg.p if "ig" in parts else 0.0,
            scfg.gamma if "at" in parts else 0.0)


def student_recipe(cfg):
    """The settings a finished student depends on (besides mode, seed and data)."""
    d = config_to_dict(cfg.student)
    for key in ("modes", "seeds"):
        d.pop(key, None)
    d["train"].pop("verbose", None)
    return d


def build_distillation(cfg, splits, mode, seed, teacher=None, maps=None, cached=None,
                       drop_remainder=False):
    """The compiled ``Distiller`` and training pipeline of one student run.

    Shared by ``train_student`` and ``benchmarks/train_overhead.py``, so the
    benchmark times exactly what training runs. Arguments as ``train_student``.

    Returns:
        (distiller, train_dataset).
    """
    scfg, tcfg = cfg.student, cfg.student.train
    alpha, p, gamma = mode_weights(mode, scfg)
    if p > 0 and maps is None:
        raise UserError(f"Mode {mode!r} needs IG maps; run precompute-ig first.")
    keras.utils.set_random_seed(seed)
    student = build_model(scfg.model.name, splits.input_shape, splits.num_classes,
                          **scfg.model.kwargs)
    use_cache = cached is not None and scfg.teacher_mode == "cached"
    extras = {"ig_map": maps} if p > 0 else None
    transform = (overlay_transform(p, tuple(scfg.exponent_range), scfg.overlay_weight,
                                   scfg.align_geometry, tcfg.augment.crop_pad) if p > 0 else None)
    train_ds = make_dataset(splits.train, batch_size=tcfg.batch_size, training=True,
                            input_norm=tcfg.input_norm, mean=splits.mean, std=splits.std,
                            crop_pad=tcfg.augment.crop_pad, flip=tcfg.augment.flip, seed=seed,
                            with_index=use_cache, extras=extras, batch_transform=transform,
                            drop_remainder=drop_remainder)
    dataset_norm = cfg.teacher.train.input_norm == "dataset"
    distiller = Distiller(
        student, teacher if (alpha > 0 and not use_cache) or gamma > 0 else None,
        alpha=alpha, temperature=scfg.temperature, gamma=gamma,
        at_layers=[tuple(pr) for pr in scfg.at_layers] if gamma > 0 else (),
        teacher_mean=splits.mean if dataset_norm else None,
        teacher_std=splits.std if dataset_norm else None,
        cached_logits=cached if (use_cache and alpha > 0) else None,
        cached_index=splits.train.index if (use_cache and alpha > 0) else None)
    distiller.compile(optimizer=build_optimizer(tcfg.optimizer, tcfg.epochs,
                                                steps_per_epoch(len(splits.train), tcfg.batch_size)))
    return distiller, train_ds


def train_student(cfg, out_dir, splits, mode, seed, teacher=None, maps=None, cached=None,
                  verbose=None):
    """Trains one student; resumes or reuses a finished run in its folder.

    Args:
        cfg: ``ExperimentConfig``.
        out_dir: Run folder; this student goes to ``out_dir/students/{mode}-s{seed}``.
        splits: ``SplitData``.
        mode: One of the eight modes.
        seed: Training seed.
        teacher: The teacher (needed for kd/at modes in online mode).
        maps: (N_train, H, W) IG maps aligned with ``splits.train`` (ig modes).
        cached: (N_train, classes) teacher logits aligned with ``splits.train``
            for ``teacher_mode: cached``.

    Returns:
        The student's metrics dict (also in ``metrics.json``).
    """
    scfg, tcfg = cfg.student, cfg.student.train
    verbose = tcfg.verbose if verbose is None else verbose
    run_dir = student_dir(out_dir, mode, seed)
    mpath, spath = os.path.join(run_dir, "metrics.json"), os.path.join(run_dir, "student.keras")
    if os.path.exists(mpath) and os.path.exists(spath):
        done = read_json(mpath)
        if done.get("fingerprint") != splits.fingerprint:
            raise UserError(f"{run_dir} holds a student trained on other data; use a new --out.")
        diff = config_diff(done.get("recipe"), student_recipe(cfg), "student")
        if diff:
            raise UserError(
                f"{run_dir} holds a student trained with other settings ({diff}); reusing it "
                "would mislabel the result. Use a new --out, or delete that folder to retrain.")
        return done
    alpha, p, gamma = mode_weights(mode, scfg)
    distiller, train_ds = build_distillation(cfg, splits, mode, seed, teacher, maps, cached)
    evals = {k: make_dataset(getattr(splits, k), batch_size=256, training=False,
                             input_norm=tcfg.input_norm, mean=splits.mean, std=splits.std)
             for k in ("val", "test")}
    t0 = time.time()
    state = fit_resumable(
        distiller, train_ds, evals["val"], epochs=tcfg.epochs, work_dir=os.path.join(run_dir, "work"),
        best_path=spath, tensorboard_dir=os.path.join(out_dir, "logs", f"{mode}-s{seed}"),
        verbose=verbose, save_best=lambda m, path: save_inference_copy(m.student, path))
    best = keras.models.load_model(spath)
    metrics = {
        "name": f"{scfg.model.name}-{mode}-s{seed}", "mode": mode, "seed": seed,
        "alpha": alpha, "p": p, "gamma": gamma, "teacher_mode": scfg.teacher_mode,
        "align_geometry": scfg.align_geometry, "input_norm": tcfg.input_norm,
        "trainable_params": trainable_params(best), "macs": count_macs(best),
        "val_accuracy": state["best"], "best_epoch": state["best_epoch"], "epochs": tcfg.epochs,
        "test_accuracy": evaluate_accuracy(best, evals["test"]),
        "train_seconds": state["train_seconds"], "wall_seconds_this_run": time.time() - t0,
        "keras_path": os.path.abspath(spath), "fingerprint": splits.fingerprint,
        "recipe": student_recipe(cfg),
        "history": state["history"],
    }
    write_json(mpath, metrics)
    if verbose:
        print(f"[{mode} seed {seed}] val {metrics['val_accuracy']:.4f} test "
              f"{metrics['test_accuracy']:.4f} ({metrics['train_seconds']:.0f} s)")
    return metrics
