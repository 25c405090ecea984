"""The ``tune.space`` section: parsed, checked, and sampled with Optuna.

A space maps a dotted config key to one parameter::

    student.alpha: {low: 0.001, high: 1.0, log: true}     # float range
    student.model.kwargs.filters: {low: 16, high: 64, step: 16, type: int}
    student.p: {choices: [0.05, 0.1, 0.2]}               # categorical

Keys are checked against the config's own sections (free-form ``kwargs``
mappings accept any sub-key), and every bound or choice is checked by
building the config with it, so a search that would fail in trial 7 fails
at load time with the same message a config file would get. Nothing here
imports Optuna or TensorFlow; ``check-config`` stays fast. Nor does it import
``tfigkd.config`` (which calls ``check_space``): the config class comes with
the config being checked.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import typing

from tfigkd.schema import from_dict

# Costs a study can minimise beside validation accuracy (Pareto front).
COST_OBJECTIVES = ("macs", "latency_ms")

SPEC_KEYS = ("low", "high", "log", "step", "type", "choices")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched parameter."""
    key: str
    kind: str                 # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def values_to_check(self):
        """The values whose configs must be valid: both bounds, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def suggest(self, trial):
        """Samples this parameter in an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high),
                                   step=self.step, log=self.log)


def config_keys(cls, prefix=""):
    """Every settable dotted key of config class ``cls`` (``*`` after free-form mappings)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, path = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            keys.extend(config_keys(tp, path + "."))
        elif tp is dict:
            keys.append(path + ".*")
        else:
            keys.append(path)
    return keys


def _known_key(key, keys):
    """True when ``key`` is one of ``keys`` (or a sub-key of a free-form mapping)."""
    for known in keys:
        if known == key or (known.endswith(".*") and key.startswith(known[:-1])
                            and len(key) > len(known) - 1):
            return True
    return False


def parse_space(space):
    """``tune.space`` as a list of ``Param`` (in the file's order).

    Raises:
        ValueError: With one line naming the key, the problem and the fix.
    """
    params = []
    for key, spec in space.items():
        where = f"tune.space.{key}"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: expected a mapping like {{low: 0.1, high: 1.0}} or "
                             f"{{choices: [1, 2]}}, got {spec!r}.")
        unknown = [k for k in spec if k not in SPEC_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(SPEC_KEYS)}.")
        if "choices" in spec:
            extra = [k for k in spec if k != "choices"]
            if extra:
                raise ValueError(f"{where}: give either choices or low/high, not both "
                                 f"(remove {', '.join(extra)}).")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{where}.choices: an empty or non-list choice set; list at "
                                 "least one value, e.g. choices: [0.1, 0.5].")
            if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
                raise ValueError(f"{where}.choices: {choices!r} repeats a value; list each once.")
            params.append(Param(key, "categorical", choices=tuple(choices)))
            continue
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{where}: a range needs low and high (or use choices: [...]).")
        low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
        kind = spec.get("type", "float")
        if kind not in ("float", "int"):
            raise ValueError(f"{where}.type: {kind!r} is not float or int.")
        for name, v in (("low", low), ("high", high), ("step", step)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"{where}.{name}: expected a number, got {v!r} (YAML reads "
                                 "1e-3 as a string: write 1.0e-3).")
            if kind == "int" and v is not None and not float(v).is_integer():
                raise ValueError(f"{where}.{name}: {v!r} is not an integer (type: int).")
        if not isinstance(log, bool):
            raise ValueError(f"{where}.log: expected true/false, got {log!r}.")
        if not low < high:
            raise ValueError(f"{where}: empty range [{low}, {high}]; low must be below high "
                             "(for a fixed value set it in the config instead).")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range needs positive bounds, got low {low}; "
                             "raise low above 0 or set log: false.")
        if step is not None and (step <= 0 or log):
            raise ValueError(f"{where}.step: {step!r}: a step must be positive and cannot be "
                             "combined with log: true.")
        if kind == "int":
            low, high, step = int(low), int(high), None if step is None else int(step)
        params.append(Param(key, kind, low=low, high=high, log=log, step=step))
    return params


def space_signature(params):
    """A JSON-able description of a space, to refuse resuming a study with another one."""
    return {p.key: {k: v for k, v in dataclasses.asdict(p).items() if k != "key"
                    and v not in (None, (), False)} for p in params}


def set_key(data, key, value):
    """Sets dotted ``key`` of a config dict (creating sections as needed); returns ``data``."""
    node = data
    *parents, last = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = copy.deepcopy(value)
    return data


def apply_params(data, values):
    """A copy of config dict ``data`` with ``{key: value}`` set."""
    out = copy.deepcopy(data)
    for key, value in values.items():
        set_key(out, key, value)
    return out


def check_space(cfg, errors):
    """Appends the problems of ``cfg.tune`` (its space and objectives) to ``errors``."""
    t, keys = cfg.tune, config_keys(type(cfg))
    try:
        params = parse_space(t.space)
    except ValueError as e:
        errors.append(str(e))
        return
    for p in params:
        if p.key.startswith("tune.") or p.key in ("name", "description"):
            errors.append(f"tune.space.{p.key}: not a training setting; search student.*, "
                          "ig.*, data.* or teacher.* keys.")
        elif not _known_key(p.key, keys):
            close = difflib.get_close_matches(p.key, [k for k in keys if not k.endswith("*")],
                                              n=1)
            errors.append(f"tune.space: {p.key!r} is not a config key."
                          + (f" Did you mean {close[0]!r}?" if close else "")
                          + " Use dotted keys such as student.alpha or student.train.optimizer.lr.")
    bad_obj = [o for o in t.objectives if o not in ("val_accuracy", *COST_OBJECTIVES)]
    if bad_obj or not t.objectives or t.objectives[0] != "val_accuracy" \
            or len(set(t.objectives)) != len(t.objectives):
        errors.append(f"tune.objectives: {t.objectives!r}; use [val_accuracy], or "
                      "val_accuracy then costs from macs, latency_ms (a Pareto front of "
                      "accuracy and cost), e.g. [val_accuracy, latency_ms].")
    keys = {p.key for p in params}
    for i, values in enumerate(t.enqueue):
        extra = sorted(set(values) - keys)
        if extra:
            errors.append(f"tune.enqueue[{i}]: {extra[0]!r} is not in tune.space; enqueue "
                          "values of searched keys only.")
    if t.sampler == "grid":
        ranged = [p.key for p in params if p.kind != "categorical"]
        if ranged:
            errors.append(f"tune.space.{ranged[0]}: the grid sampler needs a list of values; "
                          "write choices: [...] instead of low/high.")
    if errors:
        return
    # Every bound / choice must make a valid config (types, ranges, choices).
    base = dataclasses.asdict(cfg)
    base.pop("tune")
    for p in params:
        for v in p.values_to_check():
            sub = []
            from_dict(type(cfg), set_key(copy.deepcopy(base), p.key, v), "", sub)
            if sub:
                errors.append(f"tune.space.{p.key} (value {v!r}): {sub[0]}")
                break
