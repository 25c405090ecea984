"""The trials of ``tfigkd tune``: shared stages prepared once, the worker loop, one trial."""

from __future__ import annotations

import logging
import os
import shutil
import time

from tfigkd.config import config_from_dict
from tfigkd.errors import UserError
from tfigkd.io import file_sha256, write_json
from tfigkd.layout import (LOGITS_DIR, METRICS_FILE, MODEL_FILE, TRIALS_DIR, VIEWS_DIR, WORK_DIR,
                           teacher_path)
from tfigkd.lock import folder_lock
from tfigkd.tuning.space import apply_params

log = logging.getLogger(__name__)


class WithheldSplit:
    """Stands in for the test split while tuning: any use of it raises.

    Tuning decisions must not depend on test data; with this in place of
    ``splits.test`` a code path that evaluated test data would fail loudly
    instead of leaking it.
    """

    def __getattr__(self, name):
        if name.startswith("__"):  # copy / pickle protocol probes, not data
            raise AttributeError(name)
        raise RuntimeError(f"the test split is withheld while tuning (accessed .{name}); "
                           "trials are scored on the validation split only")

    def __len__(self):
        raise RuntimeError("the test split is withheld while tuning")


class _Surplus(Exception):
    """A trial started after the study already had its ``tune.trials`` (a race between workers)."""


def trial_logits(full, scfg, num_classes, memo=None):
    """A trial's cached teacher logits: the shared full logits, or their top-k packing.

    The study caches every logit once; with ``student.logit_top_k`` each trial
    packs its top k at its own ``student.temperature`` (which the search may
    vary), exactly as a top-k cache written at that temperature would hold.
    ``memo`` (a dict) keeps the packing of each (k, temperature), so trials
    that share them (the temperature not searched) pack once.
    """
    from tfigkd.distill.topk import pack_top_k, top_k_in_effect

    k = top_k_in_effect(scfg.logit_top_k, num_classes)
    if full is None or not k:
        return full
    key = (k, float(scfg.temperature))
    if memo is None:
        return pack_top_k(full, *key)
    if key not in memo:
        memo.clear()  # one packing at a time: they are as large as the data
        memo[key] = pack_top_k(full, *key)
    return memo[key]


def prepare_shared(cfg, out_dir, splits, mode, verbose):
    """The teacher, IG maps and cached teacher logits every trial shares (prepared once)."""
    from tfigkd.models import check_fits_data, load_model_file
    from tfigkd.modes import parse_mode

    m = parse_mode(mode)
    uses_kd, uses_overlay, uses_at = m.kd, m.overlay, m.at
    shared = {"teacher": None, "maps": None, "cached": None, "teacher_sha256": None}
    if not (uses_kd or uses_overlay or uses_at):
        return shared
    if not cfg.teacher.path:
        raise UserError(f"tune.mode {mode!r} needs a trained teacher; set teacher.path to its "
                        ".keras file (train one with `tfigkd train-teacher --config CONFIG "
                        "--out DIR`): tuning never trains or evaluates a teacher.")
    # The first worker prepares the shared stages; the others wait for it and reuse them.
    with folder_lock(out_dir, wait=True):
        tpath = teacher_path(cfg, out_dir)
        teacher = load_model_file(tpath, "teacher.path")
        # A teacher at its own resolution (teacher.input_size) is fed resized images
        # everywhere below: IG, the logit cache and online KD (the Distiller).
        check_fits_data(teacher, splits, f"Teacher {tpath}", cfg.teacher.input_size)
        shared.update(teacher=teacher, teacher_sha256=file_sha256(tpath))
        if uses_overlay:
            from tfigkd.experiments.attribution import load_ig_maps, precompute_ig

            precompute_ig(cfg, out_dir, splits=splits, progress=bool(verbose))
            shared["maps"] = load_ig_maps(cfg, out_dir, splits)
        if uses_kd and cfg.student.teacher_mode == "cached":
            from tfigkd.distill.logit_cache import cached_teacher_logits

            # All logits (top_k=0): trials pack their own top k (``trial_logits``).
            shared["cached"] = cached_teacher_logits(
                os.path.join(out_dir, LOGITS_DIR), tpath, splits, cfg.teacher.train.input_norm,
                teacher=teacher, top_k=0)
    return shared


def finished_count(study):
    """Trials that count towards the target: finished, pruned or running."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def worker_loop(study, objective, target, timeout_s):
    """Runs trials until the study holds ``target`` finished or running ones (or time is up)."""
    from optuna.storages import fail_stale_trials

    t0, n = time.time(), 0
    while True:
        if hasattr(study._storage, "fail_stale_trials"):
            fail_stale_trials(study)  # counted trials of dead workers become retries
        done = finished_count(study)
        if done >= target:
            break
        if timeout_s and time.time() - t0 > timeout_s:
            log.info("Timeout: %d of %d trials done or running.", done, target)
            break
        study.optimize(objective, n_trials=1, catch=(_Surplus,), gc_after_trial=True)
        n += 1
    return n


class TrialObjective:
    """The objective: one student per trial, scored on validation data only."""

    def __init__(self, cfg, base, params, out_dir, splits, shared, study, target, verbose):
        self.cfg, self.base, self.params, self.out_dir = cfg, base, params, out_dir
        self.splits, self.shared, self.study, self.target = splits, shared, study, target
        self.verbose = verbose
        self._packed = {}  # top-k packing of the shared logits per (k, temperature)

    def _check_surplus(self, trial):
        from optuna.trial import TrialState

        before = [s for s in self.study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING))
            if s.number < trial.number]
        if len(before) >= self.target:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the study already has {self.target} trials")

    def _adopt_retried_work(self, trial, tdir):
        """A retry of a killed trial continues from that trial's last finished epoch."""
        frozen = self.study._storage.get_trial(trial._trial_id)
        for old in reversed(frozen.system_attrs.get("retry_history", [])):
            old_work = os.path.join(self.out_dir, TRIALS_DIR, str(old), WORK_DIR)
            if os.path.isdir(old_work) and not os.path.exists(os.path.join(tdir, WORK_DIR)):
                os.makedirs(tdir, exist_ok=True)
                os.replace(old_work, os.path.join(tdir, WORK_DIR))
                trial.set_user_attr("resumed_from_trial", old)
                log.info("Trial %d resumes the work of killed trial %d.", trial.number, old)
                return

    def __call__(self, trial):
        import keras
        import optuna

        from tfigkd.data import make_dataset
        from tfigkd.experiments.common import precise_bn_data, steps_per_epoch
        from tfigkd.experiments.fit import fit_resumable, save_inference_copy
        from tfigkd.experiments.student import build_distillation, student_recipe
        from tfigkd.models import count_macs

        values = {p.key: p.suggest(trial) for p in self.params}
        self._check_surplus(trial)
        t = self.cfg.tune
        tdir = os.path.join(self.out_dir, TRIALS_DIR, str(trial.number))
        tcfg = config_from_dict(apply_params(self.base, values), source=f"trial {trial.number}")
        keras.backend.clear_session()  # each trial starts from a fresh Keras session
        self._adopt_retried_work(trial, tdir)
        s, splits = tcfg.student, self.splits
        distiller, train_data = build_distillation(
            tcfg, splits, t.mode, t.seed, self.shared["teacher"], self.shared["maps"],
            trial_logits(self.shared["cached"], tcfg.student, splits.num_classes, self._packed),
            # Per-view logits: trials with the same views (alpha, T) share one cache.
            view_dir=os.path.join(self.out_dir, VIEWS_DIR),
            teacher_file=teacher_path(tcfg, self.out_dir) if self.shared["teacher"] else None)
        # Validation only: the test split is a WithheldSplit here.
        val_ds = make_dataset(splits.val, batch_size=256, training=False,
                              input_norm=s.train.input_norm, mean=splits.mean, std=splits.std)
        recipe = {"fingerprint": splits.fingerprint, "mode": t.mode, "seed": t.seed,
                  "params": values, "student": student_recipe(tcfg),
                  "teacher_sha256": self.shared["teacher_sha256"]}
        prune = len(t.objectives) == 1 and t.pruner != "none"
        callbacks = []
        if prune:
            from optuna_integration import KerasPruningCallback

            callbacks.append(KerasPruningCallback(trial, "val_accuracy"))
        log.info("Trial %d: %s", trial.number,
                 ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in values.items()))
        work = os.path.join(tdir, WORK_DIR)
        try:
            state = fit_resumable(
                distiller, train_data, val_ds, epochs=s.train.epochs,
                steps_per_epoch=steps_per_epoch(len(splits.train), s.train.batch_size),
                work_dir=work, best_path=os.path.join(tdir, MODEL_FILE), recipe=recipe,
                what=f"trial {trial.number}", verbose=self.verbose, callbacks=callbacks,
                save_best=lambda m, path: save_inference_copy(m.student, path),
                bn_data=precise_bn_data(splits, s.train, t.seed))
        except optuna.TrialPruned:
            log.info("Trial %d pruned.", trial.number)
            shutil.rmtree(work, ignore_errors=True)
            raise
        macs = count_macs(distiller.student)
        costs = {"macs": float(macs)}
        if "latency_ms" in t.objectives:
            from tfigkd.bench.model_latency import cached_int8_latency_ms

            # Measured once per design (not per trial) and shared through the study folder.
            costs["latency_ms"], _ = cached_int8_latency_ms(distiller.student, self.out_dir,
                                                            runs=t.latency_runs)
        metrics = {"trial": trial.number, "params": values, "mode": t.mode, "seed": t.seed,
                   "val_accuracy": state["best"], "best_epoch": state["best_epoch"],
                   "epochs": s.train.epochs, "macs": macs, "latency_ms": costs.get("latency_ms"),
                   "train_seconds": state["train_seconds"],
                   "history": state["history"], "run_recipe": recipe}
        write_json(os.path.join(tdir, METRICS_FILE), metrics)
        shutil.rmtree(work, ignore_errors=True)  # only needed to resume; metrics.json holds it
        for k in ("best_epoch", "macs", "latency_ms", "train_seconds"):
            if metrics[k] is not None:
                trial.set_user_attr(k, metrics[k])
        log.info("Trial %d: val accuracy %.4f (epoch %s), %.0f s.", trial.number,
                 metrics["val_accuracy"], metrics["best_epoch"], metrics["train_seconds"])
        if len(t.objectives) == 1:
            return state["best"]
        return (state["best"], *(costs[o] for o in t.objectives[1:]))
