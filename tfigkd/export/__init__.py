"""Export to TFLite and checking in the LiteRT interpreter.

Imported lazily: ``tfigkd.export.targets`` (``TARGETS``, ``QUANTS``, read by configs
and ``tfigkd --help``) loads without TensorFlow.
"""

from tfigkd._lazy import lazy_attributes

# name -> the module that defines it
_API = {"QUANTS": "tfigkd.export.targets", "convert": "tfigkd.export.tflite",
        "save_tflite": "tfigkd.export.tflite", "tflite_predict": "tfigkd.export.tflite"}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _API)
