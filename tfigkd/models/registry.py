"""Name -> model-builder registry, so configs can name their models.

Later modules (and users) add designs with ``@register_model("name")``.
"""

from __future__ import annotations

import difflib
import os

from tfigkd.errors import UserError
from tfigkd.models import compact, mobilenet

_REGISTRY = {}


def register_model(name):
    """Decorator registering ``fn(input_shape, num_classes, **kwargs)`` as ``name``."""
    def wrap(fn):
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise UserError(f"Model name {name!r} is already registered.")
        _REGISTRY[name] = fn
        return fn
    return wrap


def available_models():
    """Sorted names of all registered model builders."""
    return sorted(_REGISTRY)


def resolve_design(name, setting=None):
    """``(builder, kwargs)`` of a design name: a preset (``compact.PRESETS``) or a registered model.

    Args:
        name: Preset or registered model name.
        setting: Config key the name came from, for the error (e.g. "sweep.designs").

    Raises:
        UserError: Naming the presets and registered models to choose from.
    """
    if name in compact.PRESETS:
        return compact.PRESETS[name]
    if name in _REGISTRY:
        return (name, {})
    choices = (f"use a preset ({', '.join(compact.PRESETS)}) or a registered model "
               f"({', '.join(available_models())}).")
    if setting:
        raise UserError(f"{setting}: unknown design {name!r}; {choices}")
    raise UserError(f"Unknown design {name!r}: {choices}")


def build_model(name, input_shape, num_classes, **kwargs):
    """Builds the registered model ``name``.

    Args:
        name: A registered name (see ``available_models()``).
        input_shape: (H, W, C).
        num_classes: Number of output logits.
        **kwargs: Passed to the builder (e.g. ``blocks_removed``).

    Raises:
        ValueError: If the name is unknown or the kwargs do not fit the builder.
    """
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(name, _REGISTRY, n=1)
        raise UserError(
            f"Unknown model {name!r}. Available: {', '.join(available_models())}."
            + (f" Did you mean {hint[0]!r}?" if hint else ""))
    try:
        return _REGISTRY[name](input_shape=tuple(input_shape),
                               num_classes=num_classes, **kwargs)
    except TypeError as e:
        import inspect

        params = [p for p in inspect.signature(_REGISTRY[name]).parameters
                  if p not in ("input_shape", "num_classes")]
        raise UserError(f"Bad arguments for model {name!r}: {e}; it takes "
                        f"{', '.join(params) or 'no keyword arguments'}.") from e


register_model("mobilenet_v2_cifar")(mobilenet.mobilenet_v2_cifar)
register_model("truncated_student")(mobilenet.truncated_student)
register_model("mobilenet_v2")(compact.mobilenet_v2)
register_model("resnet8")(compact.resnet8)
register_model("ds_cnn")(compact.ds_cnn)


def check_fits_data(model, splits, label="Model", input_size=None):
    """Raises ``UserError`` unless ``model`` takes ``splits``' images and predicts its classes.

    ``input_size``: the (H, W) the model is meant to see instead of the data's
    (``teacher.input_size``; the images are resized to it).
    """
    shape = tuple(splits.input_shape)
    want = ((*map(int, input_size), shape[-1]) if input_size else shape, splits.num_classes)
    got = (tuple(model.input_shape[1:]), model.output_shape[-1])
    if got != want:
        resized = (f" (resized to {want[0][0]}x{want[0][1]} for it)"
                   if input_size and want[0] != shape else "")
        raise UserError(f"{label} takes {got[0]} inputs and predicts {got[1]} classes, but the "
                        f"data has {shape} images{resized} and {want[1]} classes: wrong model "
                        "or config.")


def load_model_file(path, what="model"):
    """Loads a ``.keras`` model file, turning every way a file can be wrong into one clear error.

    Args:
        path: The file (``~`` is expanded).
        what: What the file is for, named in messages (e.g. "--model", "teacher.path").

    Returns:
        The loaded ``keras.Model``.

    Raises:
        UserError: If the file is missing, a folder, not a ``.keras`` archive,
            truncated, or uses a layer Keras does not know.
    """
    import zipfile

    import keras

    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.exists(path):
        raise UserError(f"{what}: {path} does not exist; give the path of a .keras model file.")
    if os.path.isdir(path):
        raise UserError(f"{what}: {path} is a folder (a SavedModel?); tfigkd needs a single "
                        ".keras file: load it and save with model.save('name.keras').")
    if not path.endswith(".keras"):
        raise UserError(f"{what}: {path} is not a .keras file; load it with the Keras that made "
                        "it and save it with model.save('name.keras').")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{what}: {path} is not a valid .keras archive (truncated or damaged); "
                        "copy it again or re-save the model.")
    try:
        model = keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any failure here is about the file
        import re

        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", str(e))
        if unknown or "custom" in str(e).lower():
            what_class = f"class {unknown.group(1)!r}" if unknown else f"a class ({reason})"
            raise UserError(f"{what}: {path} uses {what_class}, which Keras does not know; "
                            "import the module that registers it (keras.saving."
                            "register_keras_serializable) before loading.") from None
        raise UserError(f"{what}: {path} cannot be loaded as a Keras model "
                        f"({type(e).__name__}: {reason}); copy it again or re-save it.") from None
    if what.startswith("teacher"):
        # A teacher trained elsewhere may end in softmax; KD and IG need logits.
        from tfigkd.models.teacher_io import as_logits

        model = as_logits(model, what)
    return model
