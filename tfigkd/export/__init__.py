"""Export to TFLite and checking in the LiteRT interpreter.

Imported lazily: ``tfigkd.export.targets`` (``TARGETS``, ``QUANTS``, read by configs
and ``tfigkd --help``) loads without TensorFlow.
"""

import importlib

# name -> the module that defines it
_API = {"QUANTS": "tfigkd.export.targets", "convert": "tfigkd.export.tflite",
        "save_tflite": "tfigkd.export.tflite", "tflite_predict": "tfigkd.export.tflite"}

__all__ = sorted(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'tfigkd.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
