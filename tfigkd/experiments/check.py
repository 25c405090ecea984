"""``tfigkd check-config``: everything ``run`` would build, checked without training."""

from __future__ import annotations

import keras

from tfigkd.data import load_splits
from tfigkd.errors import UserError
from tfigkd.experiments.student import mode_weights
from tfigkd.layout import teacher_path
from tfigkd.models import build_model, check_fits_data, load_model_file, trainable_params


def check_buildable(cfg, splits=None):
    """Loads the data and builds (or loads) the teacher and the student of a config.

    Catches in seconds what would otherwise fail after the teacher has
    trained: unreadable data, an unknown model name or keyword argument, a
    teacher.path that does not fit the data, attention-transfer layers that
    do not exist or differ in spatial size.

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
        check_fits_data(teacher, splits, f"teacher.path {cfg.teacher.path}")
    else:
        teacher = _build(cfg.teacher.model, shape, classes, "teacher.model")
    student = _build(cfg.student.model, shape, classes, "student.model")
    if any(mode_weights(m, cfg.student)[2] > 0 for m in cfg.student.modes):
        for s_name, t_name in cfg.student.at_layers:
            s_shape = _layer_shape(student, s_name, "student")
            t_shape = _layer_shape(teacher, t_name, "teacher")
            if s_shape[:2] != t_shape[:2]:
                raise UserError(f"student.at_layers: {s_name!r} is {s_shape[0]}x{s_shape[1]} but "
                                f"{t_name!r} is {t_shape[0]}x{t_shape[1]}; attention transfer "
                                "pairs blocks of equal spatial size.")
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


def _layer_shape(model, name, who):
    try:
        return tuple(model.get_layer(name).output.shape[1:])
    except ValueError:
        names = [layer.name for layer in model.layers if layer.name.startswith("features")]
        raise UserError(f"student.at_layers: the {who} has no layer {name!r}; its feature "
                        f"blocks are {', '.join(names) or 'unnamed'}.") from None
