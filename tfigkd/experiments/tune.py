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
import dataclasses
import logging
import os

import yaml

from tfigkd.config import config_from_dict, config_to_dict
from tfigkd.data import load_splits
from tfigkd.errors import UserError
# The jobs of a study live in their own modules (storage, study, trials, report);
# the names used from here before the split stay importable from here.
from tfigkd.experiments.plan import prepare_plan
from tfigkd.experiments.tune_trials import (TrialObjective, WithheldSplit,  # noqa: F401
                                            trial_logits, worker_loop)
from tfigkd.layout import STUDY_DB
from tfigkd.lock import folder_lock
from tfigkd.tuning.report import best_config, write_outputs  # noqa: F401
from tfigkd.tuning.space import parse_space
from tfigkd.tuning.storage import open_storage, sqlite_lock
from tfigkd.tuning.study import (SIGNATURE_ATTR, best_trials, grid_size,  # noqa: F401
                                 open_study, study_signature)

log = logging.getLogger(__name__)


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
    with sqlite_lock(url):
        store = open_storage(url, t)
        study, created = open_study(store, name, url, t, params, signature)
    target = grid_size(params) if t.sampler == "grid" else t.trials
    target = min(t.trials, target)

    splits = load_splits(cfg.data)
    splits = dataclasses.replace(splits, test=WithheldSplit())
    # The first worker prepares the shared stages; the others wait for it and reuse them.
    with folder_lock(out_dir, wait=True):
        plan = prepare_plan(cfg, out_dir, splits, [t.mode], verbose=verbose, tuning=True)
    base = config_to_dict(cfg)
    base.pop("tune")
    objective = TrialObjective(plan, base, params, study, target)
    n_run = worker_loop(study, objective, target, t.timeout_s)
    log.info("This worker ran %d trial(s); writing the outputs.", n_run)
    with folder_lock(out_dir, wait=True):
        return write_outputs(study, out_dir, raw, cfg, params, url, name)


def _check_mode(mode):
    from tfigkd.modes import parse_mode

    if parse_mode(mode).stored_source not in (None, "ig"):
        raise UserError(f"tune.mode {mode!r}: tuning supports modes whose overlay is IG or a "
                        "control derived from it (ig, kd_ig, kd_noise, ...); tune one of those.")
