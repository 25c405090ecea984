"""Helpers of the public Python API (``tfigkd.load_config``)."""

from __future__ import annotations

import copy
import dataclasses

from tfigkd.config import (ExperimentConfig, apply_overrides, config_from_dict, config_to_dict,
                           load_config as _load_yaml)


def load_config(config, overrides=None):
    """An ``ExperimentConfig`` from a YAML path, a plain dict or a config object.

    Args:
        config: Path of a YAML file, a dict shaped like one, or an
            ``ExperimentConfig`` (copied, never modified).
        overrides: ``["section.key=value", ...]``, as ``--set`` on the command line.

    Returns:
        A validated ``ExperimentConfig``.

    Raises:
        tfigkd.UserError: Naming every invalid key and how to fix it.
    """
    if isinstance(config, ExperimentConfig):
        data = config_to_dict(config)
        return config_from_dict(apply_overrides(data, overrides), source="<config>")
    if isinstance(config, dict):
        return config_from_dict(apply_overrides(copy.deepcopy(config), overrides), source="<dict>")
    if dataclasses.is_dataclass(config):
        raise TypeError(f"expected an ExperimentConfig, got {type(config).__name__}")
    return _load_yaml(str(config), overrides)
