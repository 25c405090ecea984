"""Name -> model-builder registry, so configs can name their models.

Later modules (and users) add designs with ``@register_model("name")``.
"""

from __future__ import annotations

import difflib

from tfigkd.errors import UserError
from tfigkd.models import mobilenet

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
        raise UserError(f"Bad arguments for model {name!r}: {e}") from e


register_model("mobilenet_v2_cifar")(mobilenet.mobilenet_v2_cifar)
register_model("truncated_student")(mobilenet.truncated_student)


def check_fits_data(model, splits, label="Model"):
    """Raises ``UserError`` unless ``model`` takes ``splits``' images and predicts its classes."""
    want = (tuple(splits.input_shape), splits.num_classes)
    got = (tuple(model.input_shape[1:]), model.output_shape[-1])
    if got != want:
        raise UserError(f"{label} takes {got[0]} inputs and predicts {got[1]} classes, but the "
                        f"data has {want[0]} images and {want[1]} classes: wrong model or config.")
