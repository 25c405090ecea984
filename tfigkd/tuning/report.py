"""What a study leaves behind: best.yaml (and pareto/*.yaml), trials.csv, tune.md, tune.json."""

from __future__ import annotations

import csv
import logging
import os

import yaml

from tfigkd.io import atomic_path, write_json
from tfigkd.layout import (BEST_YAML, PARETO_DIR, TRIALS_CSV, TUNE_HISTORY_PNG, TUNE_IMPORTANCES_PNG,
                           TUNE_JSON, TUNE_MD, TUNE_PARETO_PNG, TUNE_SLICE_PNG)
from tfigkd.tuning.space import apply_params
from tfigkd.tuning.study import done_trials, best_trials

log = logging.getLogger(__name__)


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


_COST_NAMES = {"macs": "MACs", "latency_ms": "int8 latency (ms)"}


def _cost(objective, value):
    return f"{value:.4f}" if objective == "latency_ms" else f"{value:,.0f}"


def _write_csv(path, trials, params, objectives):
    keys = [p.key for p in params]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["number", "state", *objectives, *keys, "best_epoch", "macs", "latency_ms",
                        "train_seconds", "last_epoch_reported", "note"])
            for tr in trials:
                vals = list(tr.values) if tr.values else [""] * len(objectives)
                inter = tr.intermediate_values
                note = ("surplus" if tr.user_attrs.get("surplus") else
                        f"retry of {tr.system_attrs['failed_trial']}"
                        if "failed_trial" in tr.system_attrs else "")
                w.writerow([tr.number, tr.state.name, *vals, *[tr.params.get(k, "") for k in keys],
                            tr.user_attrs.get("best_epoch", ""), tr.user_attrs.get("macs", ""),
                            tr.user_attrs.get("latency_ms", ""),
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

    if len(params) < 2 or len(done_trials(study)) < 3:
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

    if len(done_trials(study)) < 2:
        return []
    target = {"target": lambda tr: tr.values[0], "target_name": "val_accuracy"} \
        if len(objectives) > 1 else {"target_name": "val_accuracy"}
    kinds = [(TUNE_HISTORY_PNG, ovm.plot_optimization_history, target),
             (TUNE_IMPORTANCES_PNG, ovm.plot_param_importances,
              {**_importance_args(), "target_name": "-val_accuracy"}),
             (TUNE_SLICE_PNG, ovm.plot_slice, target)]
    if len(objectives) > 1:
        kinds.append((TUNE_PARETO_PNG, ovm.plot_pareto_front,
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
                  + "".join(f", {_COST_NAMES[o]} {_cost(o, v)}"
                            for o, v in zip(s["objectives"][1:], b["values"][1:])), "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in b["params"].items()]
        lines += ["", f"`{BEST_YAML}` holds the input config with these values; "
                  f"`tfigkd run {BEST_YAML} --out DIR` trains it and reports test accuracy once."]
    if s["pareto"]:
        costs = s["objectives"][1:]
        names = [_COST_NAMES[o] for o in costs]
        lines += ["", f"## Pareto front (accuracy vs {', '.join(names)})", "",
                  f"| trial | val accuracy | {' | '.join(names)} | config |",
                  "|---|---|" + "---|" * len(costs) + "---|"]
        lines += [f"| {p['trial']} | {p['values'][0]:.4f} | "
                  + " | ".join(_cost(o, v) for o, v in zip(costs, p["values"][1:]))
                  + f" | `{os.path.relpath(p['yaml'], os.path.dirname(path))}` |"
                  for p in s["pareto"]]
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
