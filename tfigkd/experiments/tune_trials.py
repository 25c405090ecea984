"""The trials of ``tfigkd tune``: the worker loop and one trial (``train_student`` of the plan)."""

from __future__ import annotations

import logging
import os
import shutil
import time

from tfigkd.config import config_from_dict
from tfigkd.io import write_json
from tfigkd.layout import METRICS_FILE, TRIALS_DIR, WORK_DIR
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
    """The objective: one student per trial (``train_student``), scored on validation data only."""

    def __init__(self, plan, base, params, study, target):
        self.plan, self.base, self.params = plan, base, params
        self.study, self.target = study, target
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
            old_work = os.path.join(self.plan.folder, TRIALS_DIR, str(old), WORK_DIR)
            if os.path.isdir(old_work) and not os.path.exists(os.path.join(tdir, WORK_DIR)):
                os.makedirs(tdir, exist_ok=True)
                os.replace(old_work, os.path.join(tdir, WORK_DIR))
                trial.set_user_attr("resumed_from_trial", old)
                log.info("Trial %d resumes the work of killed trial %d.", trial.number, old)
                return

    def __call__(self, trial):
        import dataclasses

        import keras
        import optuna

        from tfigkd.experiments.plan import Unit
        from tfigkd.experiments.student import train_student

        values = {p.key: p.suggest(trial) for p in self.params}
        self._check_surplus(trial)
        t = self.plan.cfg.tune
        tdir = os.path.join(self.plan.folder, TRIALS_DIR, str(trial.number))
        tcfg = config_from_dict(apply_params(self.base, values), source=f"trial {trial.number}")
        keras.backend.clear_session()  # each trial starts from a fresh Keras session
        self._adopt_retried_work(trial, tdir)
        # The trial's settings, and the shared logits packed at its own top k and T.
        shared = dataclasses.replace(self.plan.shared, cached=trial_logits(
            self.plan.shared.cached, tcfg.student, self.plan.splits.num_classes, self._packed))
        plan = dataclasses.replace(self.plan, cfg=tcfg, shared=shared)
        callbacks = ()
        if len(t.objectives) == 1 and t.pruner != "none":
            from optuna_integration import KerasPruningCallback

            callbacks = (KerasPruningCallback(trial, "val_accuracy"),)
        log.info("Trial %d: %s", trial.number,
                 ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in values.items()))
        work = os.path.join(tdir, WORK_DIR)
        unit = Unit(t.mode, t.seed, run_dir=tdir, test=False, callbacks=callbacks,
                    recipe={"params": values}, name=f"trial {trial.number}")
        try:
            m = train_student(plan, unit)
        except optuna.TrialPruned:
            log.info("Trial %d pruned.", trial.number)
            shutil.rmtree(work, ignore_errors=True)
            raise
        costs = {"macs": float(m["macs"])}
        if "latency_ms" in t.objectives:
            from tfigkd.bench.model_latency import cached_int8_latency_ms

            # Measured once per design (not per trial) and shared through the study folder.
            student = keras.models.load_model(m["keras_path"])
            costs["latency_ms"], _ = cached_int8_latency_ms(student, self.plan.folder,
                                                            runs=t.latency_runs)
        metrics = {"trial": trial.number, "params": values, "mode": t.mode, "seed": t.seed,
                   "val_accuracy": m["val_accuracy"], "best_epoch": m["best_epoch"],
                   "epochs": m["epochs"], "macs": m["macs"], "latency_ms": costs.get("latency_ms"),
                   "train_seconds": m["train_seconds"],
                   "history": m["history"], "run_recipe": m["run_recipe"]}
        write_json(os.path.join(tdir, METRICS_FILE), metrics)
        shutil.rmtree(work, ignore_errors=True)  # only needed to resume; metrics.json holds it
        for k in ("best_epoch", "macs", "latency_ms", "train_seconds"):
            if metrics[k] is not None:
                trial.set_user_attr(k, metrics[k])
        log.info("Trial %d: val accuracy %.4f (epoch %s), %.0f s.", trial.number,
                 metrics["val_accuracy"], metrics["best_epoch"], metrics["train_seconds"])
        if len(t.objectives) == 1:
            return m["val_accuracy"]
        return (m["val_accuracy"], *(costs[o] for o in t.objectives[1:]))
