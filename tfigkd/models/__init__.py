"""Model builders (teacher, students), registry and cost counters."""

from tfigkd.models.compact import PRESETS, ds_cnn, mobilenet_v2, resnet8
from tfigkd.models.macs import (compression_factor, count_macs, format_summary,
                                summarize, trainable_params)
from tfigkd.models.mobilenet import (NUM_FEATURES, feature_channels,
                                     mobilenet_v2_cifar, truncated_student)
from tfigkd.models.registry import (available_models, build_model, check_fits_data,
                                     load_model_file, register_model, resolve_design)

__all__ = [
    "NUM_FEATURES", "PRESETS", "ds_cnn", "mobilenet_v2", "resnet8", "available_models",
    "build_model", "check_fits_data", "compression_factor", "resolve_design",
    "count_macs", "feature_channels", "format_summary", "load_model_file", "mobilenet_v2_cifar",
    "register_model", "summarize", "trainable_params", "truncated_student",
]
