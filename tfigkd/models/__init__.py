"""Model builders (teacher, students), registry and cost counters.

Imported lazily: ``tfigkd.models.teacher_io`` (its ``NORMS``, read by configs and
``tfigkd --help``) loads without Keras.
"""

from tfigkd._lazy import lazy_attributes

# name -> the module that defines it
_API = {
    **dict.fromkeys(("PRESETS", "ds_cnn", "mobilenet_v2", "resnet8"), "tfigkd.models.compact"),
    **dict.fromkeys(("compression_factor", "count_macs", "format_summary", "summarize",
                     "trainable_params"), "tfigkd.models.macs"),
    **dict.fromkeys(("NUM_FEATURES", "feature_channels", "mobilenet_v2_cifar",
                     "truncated_student"), "tfigkd.models.mobilenet"),
    **dict.fromkeys(("available_models", "build_model", "check_fits_data", "load_model_file",
                     "register_model", "resolve_design"), "tfigkd.models.registry"),
}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _API)
