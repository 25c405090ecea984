"""Export to TFLite and checking in the LiteRT interpreter."""

from tfigkd.export.tflite import QUANTS, convert, save_tflite, tflite_predict

__all__ = ["QUANTS", "convert", "save_tflite", "tflite_predict"]
