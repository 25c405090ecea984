"""``tfigkd tune``: hyperparameter search on the validation split with Optuna.

Every trial trains one student in ``tune.mode`` with the trial's values of
``tune.space`` filled into the config, and is scored on its best
**validation** accuracy (optionally with its MACs, for a Pareto front). The
test split is withheld: the data the trials see has a stand-in test split
that raises on any use, so no tuning decision can depend on test data. The
final run of ``best.yaml`` is an ordinary ``tfigkd run`` that reports test
accuracy once.

Work is shared through Optuna's storage (SQLite in ``--out`` by default, any
Optuna URL otherwise): processes started with the same storage and study
name split ``tune.trials`` between them. Trials send heartbeats; a trial
left RUNNING by a killed worker is marked failed after ``tune.grace_s`` and
retried with the same values, resuming from its last finished epoch. One
teacher, IG store and logit cache under ``--out`` serve every trial (as in
``tfigkd ablate``).

Folder layout::

    OUT/study.db           Optuna storage (default)
    OUT/trials/<number>/   metrics.json, student.keras (and work/ while running)
    OUT/best.yaml          the input config with the best values, for ``tfigkd run``
    OUT/trials.csv         every trial: state, values, parameters
    OUT/tune.md            best trial, importances, plots (tune_*.png)
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import os
import shutil
import time

import yaml

from tfigkd.config import config_diff, config_from_dict, config_to_dict
from tfigkd.data import load_splits
from tfigkd.errors import UserError
from tfigkd.io import atomic_path, file_sha256, write_json
from tfigkd.layout import (BEST_YAML, LOGITS_DIR, METRICS_FILE, MODEL_FILE, PARETO_DIR, STUDY_DB,
                           TRIALS_CSV, TRIALS_DIR, TUNE_JSON, TUNE_MD, VIEWS_DIR, WORK_DIR,
                           teacher_path)
from tfigkd.lock import folder_lock
from tfigkd.tuning.space import apply_params, parse_space, space_signature

log = logging.getLogger(__name__)

SIGNATURE_ATTR = "tfigkd"


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


def _raw_config(config, overrides):
    """(validated config, plain dict of the input) of a path, dict or ``ExperimentConfig``."""
    from tfigkd.config import ExperimentConfig, apply_overrides, as_config

    cfg = as_config(config, overrides)
    if isinstance(config, ExperimentConfig):
        raw = config_to_dict(cfg)
    elif isinstance(config, dict):
        raw = apply_overrides(copy.deepcopy(config), overrides)
    else:
        with open(str(config), encoding="utf-8") as f:
            raw = apply_overrides(yaml.safe_load(f), overrides)
    return cfg, raw


def tune(config, out_dir, trials=None, storage=None, study_name=None, sampler=None,
         timeout_s=None, overrides=None, verbose=0):
    """Runs this worker's share of a study and writes the outputs.

    Args:
        config: A YAML path, a config dict or an ``ExperimentConfig`` with a
            ``tune:`` section.
        out_dir: Tuning folder (storage, shared teacher/IG/logits, trials, outputs).
        trials: Trials in total over all workers (default ``tune.trials``).
        storage: An Optuna storage URL (default ``sqlite:///OUT/study.db``);
            ``journal:PATH`` for an Optuna journal file.
        study_name: Study name (default ``tune.study``, else the config's name).
        sampler: ``tpe``, ``grid`` or ``random`` (default ``tune.sampler``).
        timeout_s: Start no trial after this many seconds.
        overrides: ``["key=value", ...]`` applied to the config first.
        verbose: Keras verbosity of the trials.

    Returns:
        The summary dict (also written as ``OUT/tune.json``).

    Raises:
        UserError: A bad search space, storage or study (one line, before any
            trial runs; an existing study is left as it was).
    """
    import optuna

    cfg, raw = _raw_config(config, overrides)
    changes = {k: v for k, v in (("trials", trials), ("storage", storage), ("study", study_name),
                                 ("sampler", sampler), ("timeout_s", timeout_s)) if v is not None}
    if changes:
        data = config_to_dict(cfg)
        data["tune"].update(changes)
        cfg = config_from_dict(data, source="--trials/--storage/--study/--sampler/--timeout")
    t = cfg.tune
    params = parse_space(t.space)
    if not params:
        raise UserError("tune.space is empty; add the settings to search, e.g. "
                        "tune: {space: {student.alpha: {low: 0.001, high: 1.0, log: true}}}.")
    _check_mode(t.mode)
    os.makedirs(out_dir, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = t.storage or f"sqlite:///{os.path.abspath(os.path.join(out_dir, STUDY_DB))}"
    name = t.study or cfg.name
    signature = study_signature(cfg, params)
    # Workers started together on a new SQLite file would race to create its
    # tables and the study; one at a time they do not (other databases lock themselves).
    with _sqlite_lock(url):
        store = open_storage(url, t)
        study, created = open_study(store, name, url, t, params, signature)
    target = grid_size(params) if t.sampler == "grid" else t.trials
    target = min(t.trials, target)

    splits = load_splits(cfg.data)
    splits = dataclasses.replace(splits, test=WithheldSplit())
    shared = _prepare(cfg, out_dir, splits, t.mode, verbose)
    base = config_to_dict(cfg)
    base.pop("tune")
    objective = TrialObjective(cfg, base, params, out_dir, splits, shared, study, target, verbose)
    n_run = _worker_loop(study, objective, target, t.timeout_s)
    log.info("This worker ran %d trial(s); writing the outputs.", n_run)
    with folder_lock(out_dir, wait=True):
        return write_outputs(study, out_dir, raw, cfg, params, url, name)


def _check_mode(mode):
    from tfigkd.modes import parse_mode

    if parse_mode(mode).stored_source not in (None, "ig"):
        raise UserError(f"tune.mode {mode!r}: tuning supports modes whose overlay is IG or a "
                        "control derived from it (ig, kd_ig, kd_noise, ...); tune one of those.")


def grid_size(params):
    n = 1
    for p in params:
        n *= len(p.choices)
    return n


def study_signature(cfg, params):
    """What trials of one study must share: space, mode, objectives, seed and every other setting."""
    import json

    base = config_to_dict(cfg)
    t = base.pop("tune")
    for section in ("teacher", "student"):
        base[section]["train"].pop("verbose", None)
    for key in ("modes", "seeds"):
        base["student"].pop(key, None)
    for p in params:  # searched values vary between trials
        node = base
        *parents, last = p.key.split(".")
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    sig = {"space": space_signature(params), "mode": t["mode"], "seed": t["seed"],
           "objectives": t["objectives"], "sampler": t["sampler"], "config": base}
    return json.loads(json.dumps(sig))  # tuples -> lists, as stored


def _sqlite_lock(url):
    """A lock beside a local SQLite storage file (a no-op for other storages)."""
    import contextlib

    prefix = "sqlite:///"
    folder = os.path.dirname(url[len(prefix):]) if url.startswith(prefix) else ""
    if not folder or not os.path.isdir(folder):
        return contextlib.nullcontext()
    return folder_lock(folder, ".tfigkd-tune-storage.lock", wait=True)


def open_storage(url, t):
    """The Optuna storage at ``url``, with heartbeats and retries of trials left by dead workers."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    try:
        if url.startswith("journal:"):
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            path = url[len("journal:"):]
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise OSError(f"folder {folder} does not exist")
            log.warning("Journal storage has no heartbeats: a trial left RUNNING by a killed "
                        "worker is not retried (use a sqlite:/// or other RDB URL for that).")
            return JournalStorage(JournalFileBackend(path))
        engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=t.heartbeat_s,
                              grace_period=t.grace_s, heartbeat_stale_trial_callback=(
                                  RetryHeartbeatStaleTrialCallback(max_retry=3)))
    except (Exception, optuna.exceptions.OptunaError) as e:  # sqlalchemy, drivers, OS
        reason = " ".join(str(e).split("\n")[0].split())[:200]
        raise UserError(f"--storage {url!r} cannot be opened ({type(e).__name__}: {reason}); "
                        "give an Optuna storage URL such as sqlite:///runs/tune/study.db, "
                        "journal:runs/tune/journal.log or postgresql://user@host/db.") from None


def _sampler(t, params, seed):
    import optuna

    if t.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: list(p.choices) for p in params}, seed=seed)
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: parallel workers do not all propose next to the same running trial.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, t.trials // 4)),
                                      multivariate=True, constant_liar=True)


def _pruner(t, epochs):
    import optuna

    if t.pruner == "none" or len(t.objectives) > 1:  # Optuna prunes single-objective studies only
        return optuna.pruners.NopPruner()
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs))
    return optuna.pruners.MedianPruner(n_startup_trials=t.pruner_startup_trials,
                                       n_warmup_steps=t.pruner_warmup_epochs)


def open_study(storage, name, url, t, params, signature):
    """Creates the study or joins it; refuses one made with another space or settings.

    Returns:
        (study, created): ``created`` is True for the process that made it.
    """
    import optuna

    directions = ["maximize"] + ["minimize"] * (len(t.objectives) - 1)
    created = False
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        try:
            existing = optuna.create_study(study_name=name, storage=storage, directions=directions)
            created = True
        except optuna.exceptions.DuplicatedStudyError:  # another worker was faster
            existing = optuna.load_study(study_name=name, storage=storage)
    recorded = existing.user_attrs.get(SIGNATURE_ATTR)
    if recorded is None and not created:
        # Made by another worker a moment ago: its signature follows its creation.
        for _ in range(50):
            time.sleep(0.2)
            recorded = optuna.load_study(study_name=name, storage=storage).user_attrs.get(
                SIGNATURE_ATTR)
            if recorded is not None:
                break
        if recorded is None:
            raise UserError(f"Study {name!r} in {url} was not made by tfigkd tune; use another "
                            "--study name.")
    if recorded is not None and _shared_keys(recorded, signature) != _shared_keys(signature,
                                                                                recorded):
        diff = ", ".join(part.lstrip(".") for part in config_diff(
            _shared_keys(recorded, signature), _shared_keys(signature, recorded), "").split(", ")
            if part)[:400]
        raise UserError(f"Study {name!r} in {url} was made with another search space or "
                        f"settings ({diff or 'differs'}); use another --study name or --out "
                        "folder for a new search, or restore those settings to continue it.")
    # A process joining a study seeds its sampler apart from the creator's, so
    # parallel workers do not draw the same random start-up points. Not the
    # grid's: its seed orders the grid, which every worker must agree on.
    seed = t.sampler_seed
    if not created and seed is not None and t.sampler != "grid":
        seed += os.getpid()
    study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(t, params, seed),
                              pruner=_pruner(t, _epochs_of(signature)))
    if created:
        study.set_user_attr(SIGNATURE_ATTR, signature)
        for values in _enqueued(t, params):
            study.enqueue_trial(values, skip_if_exists=True)
    return study, created


def _shared_keys(a, b):
    """``a`` without the config keys ``b`` lacks (settings added or removed by another tfigkd).

    The search space itself is compared whole: a parameter added or removed is a change.
    """
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a
    return {k: (v if k == "space" else _shared_keys(v, b[k])) for k, v in a.items() if k in b}


def _epochs_of(signature):
    return int(signature["config"]["student"]["train"].get("epochs") or 1)


def _enqueued(t, params):
    """The ``tune.enqueue`` trials (keys left out are sampled as usual)."""
    return [dict(values) for values in t.enqueue]


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


def _prepare(cfg, out_dir, splits, mode, verbose):
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


def _finished_count(study):
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def _worker_loop(study, objective, target, timeout_s):
    """Runs trials until the study holds ``target`` finished or running ones (or time is up)."""
    from optuna.storages import fail_stale_trials

    t0, n = time.time(), 0
    while True:
        if hasattr(study._storage, "fail_stale_trials"):
            fail_stale_trials(study)  # counted trials of dead workers become retries
        done = _finished_count(study)
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
        metrics = {"trial": trial.number, "params": values, "mode": t.mode, "seed": t.seed,
                   "val_accuracy": state["best"], "best_epoch": state["best_epoch"],
                   "epochs": s.train.epochs, "macs": macs, "train_seconds": state["train_seconds"],
                   "history": state["history"], "run_recipe": recipe}
        write_json(os.path.join(tdir, METRICS_FILE), metrics)
        shutil.rmtree(work, ignore_errors=True)  # only needed to resume; metrics.json holds it
        for k in ("best_epoch", "macs", "train_seconds"):
            trial.set_user_attr(k, metrics[k])
        log.info("Trial %d: val accuracy %.4f (epoch %s), %.0f s.", trial.number,
                 metrics["val_accuracy"], metrics["best_epoch"], metrics["train_seconds"])
        return state["best"] if len(t.objectives) == 1 else (state["best"], float(macs))


# ---------------------------------------------------------------- outputs

def _done_trials(study):
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_trials(study):
    """The best trial (single objective) or the Pareto front by accuracy, best first."""
    done = _done_trials(study)
    if not done:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda tr: -tr.values[0])


def best_config(raw, mode, params):
    """The input config dict with ``params`` filled in and ``student.modes: [mode]``."""
    out = apply_params(raw, params)
    out.setdefault("student", {})["modes"] = [mode]
    return out


def _write_yaml(path, data, header):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(header)
            yaml.safe_dump(data, f, sort_keys=False)


def write_outputs(study, out_dir, raw, cfg, params, url, name):
    """best.yaml (and pareto/*.yaml), trials.csv, tune.md with plots, tune.json."""
    from optuna.trial import TrialState

    t = cfg.tune
    trials = study.get_trials(deepcopy=False)
    _write_csv(os.path.join(out_dir, TRIALS_CSV), trials, params, t.objectives)
    best = best_trials(study)
    counts = {s.name.lower(): sum(tr.state == s for tr in trials) for s in TrialState}
    summary = {"study": name, "storage": url, "mode": t.mode, "objectives": t.objectives,
               "sampler": t.sampler, "trials": counts, "best": None, "pareto": [],
               "best_yaml": None}
    if best:
        b = best[0]
        header = (f"# Written by tfigkd tune: study {name!r}, trial {b.number}, validation "
                  f"accuracy {b.values[0]:.4f}.\n# Run it (reports test accuracy once): "
                  f"tfigkd run {os.path.join(out_dir, BEST_YAML)} --out DIR\n")
        _write_yaml(os.path.join(out_dir, BEST_YAML), best_config(raw, t.mode, b.params), header)
        summary.update(best={"trial": b.number, "values": list(b.values), "params": b.params},
                       best_yaml=os.path.join(out_dir, BEST_YAML))
        if len(t.objectives) > 1:
            for tr in best:
                path = os.path.join(out_dir, PARETO_DIR, f"trial-{tr.number}.yaml")
                _write_yaml(path, best_config(raw, t.mode, tr.params),
                            f"# Pareto trial {tr.number}: {dict(zip(t.objectives, tr.values))}\n")
                summary["pareto"].append({"trial": tr.number, "values": list(tr.values),
                                          "params": tr.params, "yaml": path})
    summary["importances"] = _importances(study, params)
    summary["plots"] = _plots(study, out_dir, t.objectives)
    write_json(os.path.join(out_dir, TUNE_JSON), summary)
    _write_md(os.path.join(out_dir, TUNE_MD), summary, t, url)
    return summary


def _write_csv(path, trials, params, objectives):
    keys = [p.key for p in params]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["number", "state", *objectives, *keys, "best_epoch", "macs",
                        "train_seconds", "last_epoch_reported", "note"])
            for tr in trials:
                vals = list(tr.values) if tr.values else [""] * len(objectives)
                inter = tr.intermediate_values
                note = ("surplus" if tr.user_attrs.get("surplus") else
                        f"retry of {tr.system_attrs['failed_trial']}"
                        if "failed_trial" in tr.system_attrs else "")
                w.writerow([tr.number, tr.state.name, *vals, *[tr.params.get(k, "") for k in keys],
                            tr.user_attrs.get("best_epoch", ""), tr.user_attrs.get("macs", ""),
                            tr.user_attrs.get("train_seconds", ""),
                            max(inter) + 1 if inter else "", note])


def _importance_args():
    """PED-ANOVA (Optuna's default; fANOVA would need scikit-learn) on validation accuracy.

    PED-ANOVA ranks parameters by how they reach *low* targets, hence the sign.
    """
    import optuna

    return {"evaluator": optuna.importance.PedAnovaImportanceEvaluator(),
            "target": lambda tr: -tr.values[0]}


def _importances(study, params):
    import warnings

    import optuna

    if len(params) < 2 or len(_done_trials(study)) < 3:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, **_importance_args())
    except (RuntimeError, ValueError) as e:
        log.info("No parameter importances: %s", e)
        return None
    return {k: float(v) for k, v in imp.items()}


def _plots(study, out_dir, objectives):
    """PNG plots from optuna.visualization.matplotlib (those the finished trials allow)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    if len(_done_trials(study)) < 2:
        return []
    target = {"target": lambda tr: tr.values[0], "target_name": "val_accuracy"} \
        if len(objectives) > 1 else {"target_name": "val_accuracy"}
    kinds = [("tune_history.png", ovm.plot_optimization_history, target),
             ("tune_importances.png", ovm.plot_param_importances,
              {**_importance_args(), "target_name": "-val_accuracy"}),
             ("tune_slice.png", ovm.plot_slice, target)]
    if len(objectives) > 1:
        kinds.append(("tune_pareto.png", ovm.plot_pareto_front,
                      {"target_names": list(objectives)}))
    done = []
    for fname, fn, kwargs in kinds:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = fn(study, **kwargs)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            path = os.path.join(out_dir, fname)
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
            plt.close(fig)
            done.append(fname)
        except (ValueError, RuntimeError, TypeError, ZeroDivisionError) as e:
            log.info("Plot %s skipped: %s", fname, e)
    return done


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _write_md(path, s, t, url):
    lines = [f"# Tuning: study `{s['study']}`", "",
             f"Mode `{s['mode']}`, objective{'s' if len(s['objectives']) > 1 else ''} "
             f"{', '.join(s['objectives'])} (validation split; test data is never read), "
             f"sampler `{s['sampler']}`, pruner `{t.pruner}`. Trials: "
             + ", ".join(f"{n} {k}" for k, n in s["trials"].items() if n) + ".", ""]
    if s["best"]:
        b = s["best"]
        lines += [f"**Best trial {b['trial']}**: validation accuracy {b['values'][0]:.4f}"
                  + (f", MACs {b['values'][1]:,.0f}" if len(b["values"]) > 1 else ""), "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in b["params"].items()]
        lines += ["", f"`{BEST_YAML}` holds the input config with these values; "
                  f"`tfigkd run {BEST_YAML} --out DIR` trains it and reports test accuracy once."]
    if s["pareto"]:
        lines += ["", "## Pareto front (accuracy vs MACs)", "",
                  "| trial | val accuracy | MACs | config |", "|---|---|---|---|"]
        lines += [f"| {p['trial']} | {p['values'][0]:.4f} | {p['values'][1]:,.0f} | "
                  f"`{os.path.relpath(p['yaml'], os.path.dirname(path))}` |" for p in s["pareto"]]
    if s["importances"]:
        lines += ["", "## Parameter importances (PED-ANOVA, validation accuracy)", "",
                  "| parameter | importance |", "|---|---|"]
        lines += [f"| `{k}` | {v:.3f} |" for k, v in s["importances"].items()]
    if s["plots"]:
        lines += [""] + [f"![{p}]({p})" for p in s["plots"]]
    lines += ["", "Every trial: `trials.csv`; per-trial metrics and models: `trials/<number>/`.",
              f"Live view: `optuna-dashboard {url.removeprefix('journal:')}` "
              "(pip install optuna-dashboard).", ""]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
