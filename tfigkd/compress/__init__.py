"""QAT and pruning (tensorflow-model-optimization) on a tf_keras twin of a student."""

from tfigkd.compress.tf_keras_port import UnsupportedLayerError, copy_weights, to_tf_keras

__all__ = ["UnsupportedLayerError", "copy_weights", "to_tf_keras"]
