"""One study shared by many workers: its signature, sampler, pruner and best trials."""

from __future__ import annotations

import os
import time

from tfigkd.config import RUNTIME_KEYS, config_to_dict
from tfigkd.errors import UserError
from tfigkd.freshness import recipe_diff
from tfigkd.tuning.space import space_signature

SIGNATURE_ATTR = "tfigkd"


def grid_size(params):
    """The number of points of a grid of categorical ``params``."""
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
        for key in RUNTIME_KEYS:  # how a run executes, not what it computes
            base[section]["train"].pop(key, None)
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
    diff = recipe_diff(_shared_keys(recorded, signature),
                       _shared_keys(signature, recorded)) if recorded is not None else ""
    if diff:
        diff = diff[:400]
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


def done_trials(study):
    """The COMPLETE trials of ``study``."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_trials(study):
    """The best trial (single objective) or the Pareto front by accuracy, best first."""
    done = done_trials(study)
    if not done:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda tr: -tr.values[0])
