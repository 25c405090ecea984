"""Helpers of the public Python API (``tfigkd.load_config``)."""

from __future__ import annotations

# The body lives in tfigkd.config (as_config), so the stage runners can use it too.
from tfigkd.config import as_config as load_config

__all__ = ["load_config"]
