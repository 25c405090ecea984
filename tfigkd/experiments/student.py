"""Student training in one of the eight ablation modes (docs/method.md)."""

from __future__ import annotations

import logging
import os
import time

import keras

from tfigkd.augment import overlay_transform
from tfigkd.augment.mixing import chain, mix_transform
from tfigkd.augment.controls import DERIVED, derived_settings, overlay_maps
from tfigkd.config import RUNTIME_KEYS, config_to_dict
from tfigkd.distill import Distiller
from tfigkd.distill.pairing import resolve_pairs
from tfigkd.distill.topk import top_k_in_effect
from tfigkd.errors import UserError
from tfigkd.distribute import (in_scope, inference_strategy, is_chief,
                                           replicated, scope, strategy_for, weights_digest,
                                           worker_lock, worker_result)
from tfigkd.experiments.common import (eval_dataset, eval_datasets, evaluate_accuracy,
                                       precise_bn_data,
                                       steps_per_epoch, training_data)
from tfigkd.experiments.fit import fit_resumable, save_inference_copy
from tfigkd.freshness import check_same_recipe
from tfigkd.experiments.optim import build_optimizer
from tfigkd.io import file_sha256, read_json, write_json
from tfigkd.layout import LOGS_DIR, METRICS_FILE, MODEL_FILE, WORK_DIR
from tfigkd.models import build_model, count_macs, trainable_params
from tfigkd.models.teacher_io import affine
from tfigkd.modes import parse_mode

log = logging.getLogger(__name__)


def mode_weights(mode, scfg):
    """``Weights(alpha, p, gamma)`` of a mode name (``tfigkd.modes.Mode.weights``)."""
    return parse_mode(mode).weights(scfg)


def overlay_source(mode):
    """Where a mode's overlay maps come from ("ig", "gradcam", "noise", ...), or None."""
    return parse_mode(mode).source


def overlay_recipe(cfg, mode, seed):
    """What a mode's overlay maps depend on beyond the IG settings (None for ``ig``).

    Stored sources: their store settings; derived controls: derivation, seed, sigma.
    """
    from tfigkd.attribution.sources import source_settings

    source = overlay_source(mode)
    if source in (None, "ig"):
        return None
    if source in DERIVED:
        return derived_settings(source, seed, cfg.controls.noise_sigma)
    return {"source": source, "settings": config_to_dict(source_settings(cfg, source))}


def student_recipe(cfg):
    """The settings a finished student depends on (besides mode, seed and data)."""
    d = config_to_dict(cfg.student)
    for key in ("modes", "seeds"):
        d.pop(key, None)
    for key in RUNTIME_KEYS:
        d["train"].pop(key, None)
    return d


def teacher_affine(cfg, splits):
    """The teacher's normalisation as (u - m) / s of the student's [0, 1] input (None, None: none)."""
    t_norm = cfg.teacher.train.input_norm
    return (None, None) if t_norm == "unit" else affine(
        t_norm, splits.mean, splits.std, splits.input_shape[-1])


def view_recipe(cfg, splits, mode, seed, teacher_sha256):
    """Everything the training views of (mode, seed) and the teacher's logits of them depend on.

    Keys the per-view logit cache (``tfigkd.distill.view_cache``): modes and
    settings that see the same views share a cache (alpha, and T unless top-k).
    """
    scfg, tcfg = cfg.student, cfg.student.train
    _, p, _ = mode_weights(mode, scfg)
    k = top_k_in_effect(scfg.logit_top_k, splits.num_classes)
    recipe = {"fingerprint": splits.fingerprint, "seed": int(seed), "epochs": tcfg.epochs,
              "batch_size": tcfg.batch_size, "augment": config_to_dict(tcfg.augment),
              "student_input_norm": tcfg.input_norm, "mix": scfg.mix,
              "mix_alpha": scfg.mix_alpha if scfg.mix != "none" else None,
              "teacher_sha256": teacher_sha256, "teacher_input_norm": cfg.teacher.train.input_norm,
              "teacher_input_size": cfg.teacher.input_size,
              "top_k": k, "temperature": scfg.temperature if k else None}
    if p > 0:
        recipe["overlay"] = {"source": overlay_source(mode), "p": p,
                             "exponent_range": list(scfg.exponent_range),
                             "weight": scfg.overlay_weight, "align_geometry": scfg.align_geometry,
                             "ig": config_to_dict(cfg.ig),
                             "maps": overlay_recipe(cfg, mode, seed)}
    return recipe


def training_split(splits, uses_kd):
    """The split a mode trains on: without a teacher term, unlabelled images teach
    nothing, so a plain student trains on the labelled images only."""
    from tfigkd.data.unlabeled import labeled_only

    return splits if uses_kd else labeled_only(splits)


def build_distillation(cfg, splits, mode, seed, teacher=None, maps=None, cached=None,
                       drop_remainder=False, view_dir=None, teacher_file=None):
    """The compiled ``Distiller`` and training data of one student run.

    Shared by ``train_student`` and the benchmarks, so a benchmark times
    exactly what training runs. Arguments as ``train_student``, plus:

    Args:
        view_dir: Folder of the per-view logit caches (``teacher_mode: per_view``).
        teacher_file: The teacher's ``.keras`` (its SHA-256 keys the per-view cache).

    Returns:
        (distiller, train_data): ``train_data(first_epoch, num_epochs)``
        builds the training pipeline of those epochs (see ``fit_resumable``).
    """
    scfg, tcfg = cfg.student, cfg.student.train
    alpha, p, gamma = mode_weights(mode, scfg)
    if p > 0 and maps is None:
        raise UserError(f"Mode {mode!r} needs IG maps; run precompute-ig first.")
    partial = bool((splits.train.y < 0).any())
    if partial and p > 0:
        raise UserError(f"Mode {mode!r} overlays IG maps, which are computed for labelled "
                        "images only; with unlabelled images use modes without an overlay "
                        "(student, kd).")
    if scfg.mix != "none" and alpha > 0 and scfg.teacher_mode == "cached":
        raise UserError("student.mix needs the teacher's logits of the mixed image; cached "
                        "logits belong to the un-mixed one. Set student.teacher_mode: per_view "
                        "(or online).")
    splits = training_split(splits, alpha > 0)
    partial = partial and alpha > 0
    keras.utils.set_random_seed(seed)
    with scope(tcfg):  # student, teacher, Distiller and optimiser on the replicas
        student = build_model(scfg.model.name, splits.input_shape, splits.num_classes,
                              **scfg.model.kwargs)
        teacher = in_scope(teacher, tcfg)
    use_cache = cached is not None and scfg.teacher_mode == "cached" and alpha > 0
    per_view = scfg.teacher_mode == "per_view" and alpha > 0
    extras = ({"ig_map": overlay_maps(overlay_source(mode), maps, seed, cfg.controls.noise_sigma)}
              if p > 0 else None)
    transform = chain(
        overlay_transform(p, tuple(scfg.exponent_range), scfg.overlay_weight,
                          scfg.align_geometry, tcfg.augment.crop_pad) if p > 0 else None,
        mix_transform(scfg.mix, scfg.mix_alpha) if scfg.mix != "none" else None)
    train_data = training_data(splits, tcfg, seed, with_index=use_cache, with_view=per_view,
                               extras=extras, batch_transform=transform,
                               drop_remainder=drop_remainder)
    t_mean, t_std = teacher_affine(cfg, splits)
    k = top_k_in_effect(scfg.logit_top_k, splits.num_classes)
    logits, key = (cached, "index") if use_cache else (None, "index")
    if per_view:
        if teacher is None or teacher_file is None or view_dir is None:
            raise UserError("teacher_mode per_view needs the teacher, its file and a cache folder.")
        logits, key = per_view_logits(cfg, splits, mode, seed, teacher, teacher_file, view_dir,
                                      train_data, (t_mean, t_std), k), "view"
    with scope(tcfg):
        distiller = Distiller(
            student, teacher if (alpha > 0 and logits is None) or gamma > 0 else None,
            alpha=alpha, temperature=scfg.temperature, gamma=gamma,
            at_layers=(resolve_pairs(student, teacher, scfg.at_layers, scfg.at_pairing)
                       if gamma > 0 and teacher is not None else ()),
            teacher_mean=t_mean, teacher_std=t_std, cached_logits=logits,
            cached_index=splits.train.index if use_cache else None,
            cached_top_k=k if logits is not None else None, cached_key=key,
            partial_labels=partial)
        distiller.compile(optimizer=build_optimizer(
            tcfg.optimizer, tcfg.epochs, steps_per_epoch(len(splits.train), tcfg.batch_size)),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return distiller, train_data


def view_forward(teacher, input_shape, norm):
    """The teacher's logits of a batch of training views in the student's input space.

    ``norm``: ``teacher_affine``'s (mean, std), applied inside the trace. One
    trace for every batch size (the last batch of an epoch may be partial).
    """
    import tensorflow as tf

    from tfigkd.distill.distiller import teacher_input

    @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    def forward(image):
        return teacher(teacher_input(image, teacher, *norm), training=False)

    return forward


def per_view_logits(cfg, splits, mode, seed, teacher, teacher_file, view_dir, train_data, norm,
                    k):
    """The teacher's logits of every training view of (mode, seed), cached by view recipe."""
    from tfigkd.distill.topk import pack_top_k
    from tfigkd.distill.view_cache import compute_view_logits, load_or_compute, recipe_key

    recipe = view_recipe(cfg, splits, mode, seed, file_sha256(teacher_file))
    epochs, n = cfg.student.train.epochs, len(splits.train)
    forward = view_forward(teacher, splits.input_shape, norm)

    def compute():  # batches spread over this machine's replicas (train.distribute)
        rows = compute_view_logits(replicated(forward, inference_strategy(cfg.teacher.train)),
                                   train_data(0, epochs), epochs * n, splits.num_classes)
        return pack_top_k(rows, k, cfg.student.temperature) if k else rows

    return load_or_compute(os.path.join(view_dir, recipe_key(recipe)), recipe, compute,
                           teacher_file)


def run_recipe(cfg, splits, mode, seed, teacher_sha256):
    """Everything one student run depends on: settings, mode, seed, data and, if used, the teacher."""
    alpha, p, gamma = mode_weights(mode, cfg.student)
    recipe = {"fingerprint": splits.fingerprint, "mode": mode, "seed": seed,
              "student": student_recipe(cfg)}
    if alpha > 0 or p > 0 or gamma > 0:
        recipe["teacher_sha256"] = teacher_sha256
    if p > 0:
        recipe["ig"] = config_to_dict(cfg.ig)
        overlay = overlay_recipe(cfg, mode, seed)
        if overlay is not None:
            recipe["overlay"] = overlay
    return recipe


def train_student(plan, unit):
    """Trains one student of a plan; resumes, or reuses a finished run in its folder.

    The one training path of ``run``, ``ablate``, ``sweep`` and ``tune``.

    Args:
        plan: ``tfigkd.experiments.plan.RunPlan`` (settings, data, shared teacher,
            maps and logits).
        unit: ``tfigkd.experiments.plan.Unit`` (mode, seed, rows, folder).

    Returns:
        The student's metrics dict (also in ``metrics.json``). Without
        ``unit.test`` it has no test accuracy (tuning).

    Raises:
        UserError: If the folder holds a finished or partial student made
            with other settings, data or teacher.
    """
    # One writer per student folder: ablation shards train different
    # students of one run folder at the same time.
    cfg = plan.unit_cfg(unit)
    with worker_lock(plan.unit_dir(unit), strategy_for(cfg.student.train)):
        return _train_student(plan, unit, cfg)


def _finished(run_dir, recipe, mode, seed):
    """The metrics of a finished student with this recipe, or None (refused if another)."""
    mpath, spath = os.path.join(run_dir, METRICS_FILE), os.path.join(run_dir, MODEL_FILE)
    if not (os.path.exists(mpath) and os.path.exists(spath)):
        return None
    done = read_json(mpath)
    recorded = done.get("run_recipe")
    if recorded is None and "recipe" in done:  # written before run recipes were recorded
        recorded = {k: recipe[k] for k in ("mode", "seed") if k in recipe}
        recorded.update(fingerprint=done.get("fingerprint"), student=done["recipe"],
                        **{k: recipe[k] for k in ("teacher_sha256", "ig") if k in recipe})
    if recorded is not None and "overlay" in recipe and "overlay" not in recorded \
            and overlay_source(mode) in DERIVED:
        # Written before overlay settings were recorded: made with the version-1
        # derivation and the default sigma of that time.
        recorded = {**recorded, "overlay": derived_settings(overlay_source(mode), seed)}
    check_same_recipe(recorded, recipe, run_dir, "a student trained",
                      "reusing it would mislabel the result; use a new --out, or delete "
                      "that folder to retrain")
    return done


def _train_student(plan, unit, cfg):
    scfg, tcfg = cfg.student, cfg.student.train
    mode, seed, verbose = unit.mode, unit.seed, plan.verbose
    splits, maps, cached = plan.unit_data(unit)
    run_dir = plan.unit_dir(unit)
    mpath, spath = os.path.join(run_dir, METRICS_FILE), os.path.join(run_dir, MODEL_FILE)
    recipe = {**run_recipe(cfg, splits, mode, seed, plan.shared.teacher_sha256),
              **(unit.recipe or {})}
    done = _finished(run_dir, recipe, mode, seed) if unit.test else None
    if done is not None:
        return done
    alpha, p, gamma = mode_weights(mode, scfg)
    distiller, train_data = build_distillation(
        cfg, splits, mode, seed, plan.shared.teacher, maps, cached, view_dir=plan.views_dir,
        teacher_file=plan.shared.teacher_file)
    train_len = len(training_split(splits, alpha > 0).train)
    # Validation only while tuning: its test split is withheld.
    val, test = (eval_datasets(splits, tcfg, batch_size=256) if unit.test else
                 (eval_dataset(splits, "val", tcfg, batch_size=256), None))
    name = unit.name or f"student {mode}-s{seed}"
    t0 = time.time()
    state = fit_resumable(
        distiller, train_data, val, epochs=tcfg.epochs,
        steps_per_epoch=steps_per_epoch(train_len, tcfg.batch_size),
        work_dir=os.path.join(run_dir, WORK_DIR), best_path=spath, recipe=recipe, what=name,
        tensorboard_dir=(os.path.join(unit.folder or plan.folder, LOGS_DIR, f"{mode}-s{seed}")
                         if unit.test else None),
        verbose=verbose, callbacks=list(unit.callbacks),
        save_best=lambda m, path: save_inference_copy(m.student, path),
        bn_data=precise_bn_data(splits, tcfg, seed))
    if not is_chief(distiller.distribute_strategy):  # the chief writes the results
        return worker_result(state, distiller.student)
    best = keras.models.load_model(spath) if unit.test else distiller.student
    metrics = {
        "name": f"{scfg.model.name}-{mode}-s{seed}", "mode": mode, "seed": seed,
        "alpha": alpha, "p": p, "gamma": gamma, "teacher_mode": scfg.teacher_mode,
        "align_geometry": scfg.align_geometry, "input_norm": tcfg.input_norm,
        "trainable_params": trainable_params(best), "macs": count_macs(best),
        "val_accuracy": state["best"], "best_epoch": state["best_epoch"], "epochs": tcfg.epochs,
        "train_seconds": state["train_seconds"], "wall_seconds_this_run": time.time() - t0,
        "keras_path": os.path.abspath(spath), "fingerprint": splits.fingerprint,
        "recipe": student_recipe(cfg), "run_recipe": recipe,
        "history": state["history"], "weights_sha256": weights_digest(best),
    }
    if not unit.test:
        return metrics  # the tuner adds its own fields and writes them
    metrics["test_accuracy"] = evaluate_accuracy(best, test)
    write_json(mpath, metrics)
    log.info("[%s seed %s] val %.4f test %.4f (%.0f s)", mode, seed, metrics["val_accuracy"],
             metrics["test_accuracy"], metrics["train_seconds"])
    return metrics
