"""Typed dataclasses from YAML and plain dicts, with one line per problem.

The machinery under ``tfigkd.config``: it knows field types, choices and ranges
(a field's ``metadata``), not the experiment's sections, so the config module
and ``tfigkd.tuning.space`` (which checks a searched value as a config would)
share it without importing each other.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing

import yaml

from tfigkd.errors import UserError


class ConfigError(UserError):
    """A configuration file is invalid. The message lists every problem."""


def type_name(tp) -> str:
    """How a message names type ``tp`` ("an integer", "a list of a number", ...)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(type_name(a) for a in args) + " or null"
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false",
            str: "a string", dict: "a mapping"}.get(tp, str(tp))


def convert(value, tp, where, errors, meta=None, base=None):
    """Checks ``value`` against type ``tp``; returns the converted value.

    ``base``: for a section, the default it refines (keys not given keep it).
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return convert(value, args[0], where, errors, meta, base)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{where}: expected a mapping (a YAML section), got "
                          f"{value!r} ({type(value).__name__}).")
            return tp()
        return from_dict(tp, value, where, errors, base)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            errors.append(f"{where}: expected {type_name(tp)}, got {value!r}.")
            return value
        return [convert(v, typing.get_args(tp)[0], f"{where}[{i}]", errors)
                for i, v in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }.get(tp, True)
    if not ok:
        hint = ""
        if tp in (int, float) and isinstance(value, str):
            hint = " Write the number without quotes (YAML reads 1e-3 as a string: write 1.0e-3)."
        errors.append(f"{where}: expected {type_name(tp)}, got {value!r} "
                      f"({type(value).__name__}).{hint}")
        return value
    if tp is float:
        value = float(value)
    meta = meta or {}
    if "choices" in meta and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), meta["choices"], n=1)
        errors.append(f"{where}: {value!r} is not one of "
                      f"{', '.join(map(repr, meta['choices']))}."
                      + (f" Did you mean {close[0]!r}?" if close else ""))
    if "range" in meta:
        lo, hi = meta["range"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            errors.append(f"{where}: {value!r} is out of range "
                          f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}].")
    return value


def from_dict(cls, data, where, errors, base=None):
    """Dataclass ``cls`` from mapping ``data``; each problem is appended to ``errors``.

    Args:
        cls: The dataclass (a config section) to build.
        data: Its plain-data form (parsed YAML).
        where: The dotted key of ``data`` in the file, for messages ('' at the top).
        errors: Gets one line per unknown key, wrong type or bad value.
        base: The default the section refines (None: ``cls()``).

    Returns:
        The instance; with problems in ``errors`` its fields may be unchecked.
    """
    # A section refines its parent's default, not the section type's: e.g. a
    # student.train that sets only epochs keeps the student's Adam recipe and
    # [0, 1] inputs instead of falling back to TrainConfig's teacher defaults.
    base = base if base is not None else cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            errors.append(
                f"{path}: unknown key." + (f" Did you mean {close[0]!r}?" if close else "")
                + f" Allowed keys here: {', '.join(fields)}.")
            continue
        kwargs[key] = convert(value, hints[key], path, errors, fields[key].metadata,
                               base=getattr(base, key))
    return dataclasses.replace(base, **kwargs)


def apply_overrides(data: dict, overrides) -> dict:
    """Applies ``["a.b=value", ...]`` (values parsed as YAML) to a config dict."""
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: must look like key.sub=value "
                              "(e.g. --set teacher.train.epochs=2).")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: {key!r} is not a key path like teacher.train.epochs.")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a section.")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            problem = " ".join(str(getattr(e, "problem", "") or e).split())
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({problem}); quote "
                              "strings and close brackets, e.g. --set student.seeds=[0,1].") from None
    return data


def read_yaml_mapping(path: str) -> dict:
    """The top-level mapping of the YAML file ``path``.

    Raises:
        ConfigError: If the file is missing, empty, not YAML, or not a mapping.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"Config file {path!r} not found. The shipped configs "
                          "are in configs/ (e.g. configs/fashion_mnist.yaml).")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; a config is YAML text like "
                          "configs/quickstart.yaml.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", "") or e).split())
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}; fix the syntax "
                          "(indentation, colons, quotes).") from None
    if data is None:
        raise ConfigError(f"{path} is empty; write at least a name and a data section (see "
                          "configs/quickstart.yaml), or pass that file instead.")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, "
                          f"teacher:, ...), got a {type(data).__name__}.")
    return data
