"""Lazy package attributes: a name is imported from its module on first use.

So that ``import tfigkd``, configs and ``tfigkd --help`` load without
TensorFlow. One mechanism for ``tfigkd``, ``tfigkd.models`` and ``tfigkd.export``.
"""

from __future__ import annotations

import importlib


def lazy_attributes(package, namespace, api):
    """``(__getattr__, __dir__)`` for a package module.

    Args:
        package: The package's name (for the error message).
        namespace: The package's ``globals()``; a loaded name is cached there.
        api: ``{name: module}`` (the attribute of that name) or
            ``{name: (module, attr)}`` (``attr`` None: the module itself).
    """

    def __getattr__(name):
        if name not in api:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        spec = api[name]
        module, attr = spec if isinstance(spec, tuple) else (spec, name)
        value = importlib.import_module(module)
        value = value if attr is None else getattr(value, attr)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(api))

    return __getattr__, __dir__
