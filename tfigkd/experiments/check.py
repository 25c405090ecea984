"""``tfigkd check-config``: everything ``run`` would build, checked without training."""

from __future__ import annotations

import keras

from tfigkd.data import load_splits
from tfigkd.distill.pairing import resolve_pairs
from tfigkd.errors import UserError
from tfigkd.experiments.student import mode_weights
from tfigkd.layout import teacher_path
from tfigkd.models import build_model, check_fits_data, load_model_file, trainable_params


def check_buildable(cfg, splits=None):
    """Loads the data and builds (or loads) the teacher and the student of a config.

    Catches in seconds what would otherwise fail after the teacher has
    trained: unreadable data, an unknown model name or keyword argument, a
    teacher.path that does not fit the data, attention-transfer layers that
    do not exist or cannot be paired (equal spatial size; equal stride when the
    teacher takes another input size, ``teacher.input_size``).

    Args:
        cfg: A validated ``ExperimentConfig``.
        splits: Pre-loaded ``SplitData`` (loaded from ``cfg.data`` if None).

    Returns:
        A one-line description of the data and models.

    Raises:
        UserError: Naming the config key and the fix.
    """
    splits = splits or load_splits(cfg.data)
    shape, classes = splits.input_shape, splits.num_classes
    if cfg.teacher.path:
        teacher = load_model_file(teacher_path(cfg, None), "teacher.path")
        check_fits_data(teacher, splits, f"teacher.path {cfg.teacher.path}",
                        cfg.teacher.input_size)
    else:
        from tfigkd.experiments.teacher import teacher_input_shape

        teacher = _build(cfg.teacher.model, teacher_input_shape(cfg, splits), classes,
                         "teacher.model")
    student = _build(cfg.student.model, shape, classes, "student.model")
    if any(mode_weights(m, cfg.student).gamma > 0 for m in cfg.student.modes):
        resolve_pairs(student, teacher, cfg.student.at_layers, cfg.student.at_pairing)
    keras.backend.clear_session()
    return (f"{splits.name} {splits.sizes()} {'x'.join(map(str, shape))}, {classes} classes; "
            f"teacher {trainable_params(teacher):,} params, student {cfg.student.model.name} "
            f"{trainable_params(student):,} params")


def _build(model_cfg, shape, classes, key):
    try:
        return build_model(model_cfg.name, shape, classes, **model_cfg.kwargs)
    except UserError as e:
        raise UserError(f"{key}: {e}") from None
    except ValueError as e:  # a kwarg of the right type but an impossible value
        raise UserError(f"{key}: {model_cfg.name} cannot be built with {model_cfg.kwargs} for "
                        f"{shape} inputs ({e}).") from None
