"""A teacher trained elsewhere: its own input normalisation, resolution and output layer.

Every input normalisation is an affine map of the unit image ``u = pixel / 255``:
``x = (u - m) / s`` per channel. ``affine`` gives ``(m, s)`` for each
``teacher.train.input_norm``; that one form is what the Distiller applies to the
student's [0, 1] batch (``teacher_mean``/``teacher_std``) and what IG uses to
place its "black" baseline.

The teacher's resolution is read from the model itself (``input_shape``):
wherever the teacher is called on the student's images (IG, cached logits,
online KD), they are resized (bilinear) to its size first. IG maps are
computed at the teacher's resolution and resized (bilinear, then renormalised
to sum to 1) to the student's for the overlay; the map stays aligned with the
image because both are the same field of view, and the overlay's crop/flip
(``align_geometry``) is applied after, at the student's resolution.
"""

from __future__ import annotations

import logging

import numpy as np

from tfigkd.errors import UserError

log = logging.getLogger(__name__)

NORMS = ("dataset", "unit", "raw", "minus_one_one", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def affine(mode, mean=None, std=None, channels=None):
    """``(m, s)`` per channel such that the model input is ``(pixel / 255 - m) / s``.

    Args:
        mode: An input normalisation (``NORMS``).
        mean, std: The dataset statistics (or ``data.mean``/``data.std``) for "dataset".
        channels: Channel count (for the ImageNet constants of grey images).

    Returns:
        Two tuples of floats.
    """
    c = channels or (len(mean) if mean is not None else 3)
    if mode == "dataset":
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if mode == "unit":
        return (0.0,) * c, (1.0,) * c
    if mode == "raw":
        return (0.0,) * c, (1.0 / 255.0,) * c
    if mode == "minus_one_one":
        return (0.5,) * c, (0.5,) * c
    if mode == "imagenet":
        if c == 3:
            return IMAGENET_MEAN, IMAGENET_STD
        # A grey image gets the luminance-weighted ImageNet constants.
        w = np.array([0.299, 0.587, 0.114])
        return (float(w @ IMAGENET_MEAN),) * c, (float(w @ IMAGENET_STD),) * c
    raise UserError(f"Unknown input normalisation {mode!r}; use one of {', '.join(NORMS)}.")


def teacher_size(teacher):
    """The teacher's (H, W), or None when it accepts any size."""
    shape = tuple(teacher.input_shape[1:3])
    return None if None in shape else tuple(int(v) for v in shape)


def resize_images(x, size):
    """Bilinear resize of a (B, H, W, C) batch to ``size`` (float32; identity when equal)."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    if size is None or tuple(x.shape[1:3]) == tuple(size):
        return x
    return tf.image.resize(x, size, method="bilinear", antialias=True)


def resize_maps(maps, size):
    """Resizes (B, H, W) attribution maps to ``size``; each stays non-negative and sums to 1.

    The maps are normalised distributions (``ig_map``); bilinear resizing
    keeps their shape, and renormalising keeps them distributions.
    """
    maps = np.asarray(maps, np.float32)
    if size is None or maps.shape[1:3] == tuple(size):
        return maps
    import tensorflow as tf

    out = tf.image.resize(maps[..., None], size, method="bilinear", antialias=True)[..., 0]
    out = np.maximum(out.numpy(), 0.0)
    total = out.reshape(len(out), -1).sum(1)[:, None, None]
    return (out / np.maximum(total, 1e-12)).astype(np.float32)


def softmax_output(model):
    """What applies the model's final softmax: "layer" (a Softmax/Activation layer),
    "activation" (a layer's ``activation=softmax``), or None (it outputs logits)."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "layer"
    act = getattr(last, "activation", None)
    if act is not None and getattr(act, "__name__", "") == "softmax":
        return "layer" if isinstance(last, keras.layers.Activation) else "activation"
    return None


def as_logits(model, what="teacher"):
    """The model itself if it outputs logits; else a model of its pre-softmax or log-probabilities.

    KD softens the teacher's logits with a temperature; probabilities would be
    softened twice. When the softmax is a separate layer, its input is the
    logits; when it is fused into the last layer's activation, the
    log-probabilities ``log p = z - logsumexp(z)`` differ from the logits only
    by a per-example constant, which softmax (KD's and IG's "probabilities")
    ignores. A warning says which was used.
    """
    import keras

    kind = softmax_output(model)
    if kind is None:
        return model
    if kind == "layer":
        log.warning("%s %s ends with a softmax layer; using its input (the logits) for KD and IG.",
                    what, model.name)
        return keras.Model(model.inputs, model.layers[-1].input, name=f"{model.name}_logits")
    log.warning("%s %s outputs probabilities (softmax activation in its last layer); using "
                "their logarithm as logits for KD and IG.", what, model.name)
    out = keras.ops.log(keras.ops.maximum(model.outputs[0], 1e-12))
    return keras.Model(model.inputs, out, name=f"{model.name}_log_probs")


# Layers that may come before a model's own preprocessing without changing pixel values'
# scale (inference-time identity augmentation, resizing, casts, reshapes).
_PASS_THROUGH = ("InputLayer", "Resizing", "CenterCrop", "Cast", "Reshape", "Permute",
                 "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                 "RandomContrast", "RandomBrightness", "RandomCrop")


def _first_layers(model):
    """The model's layers in graph order, nested models flattened in place."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _first_layers(layer)
        else:
            yield layer


def detect_input_norm(model):
    """The input normalisation a model states in its own graph, or None.

    A model whose first computing layer is a ``Rescaling`` or ``Normalization``
    layer (your own, or Keras Applications' ``include_preprocessing``) does
    its preprocessing itself; what it must be fed follows from that layer's
    constants: a scale of about 1/255 or 1/127.5 (or a mean above 2) means
    pixel values 0..255 ("raw"); a scale near 1 or 2 (or a mean below 2)
    means pixels / 255 ("unit").

    Returns:
        ``(norm, reason)``: a ``NORMS`` entry and the layer that says so, or
        ``(None, None)`` when the graph does not say (the caller must ask).
    """
    import keras

    for layer in _first_layers(model):
        kind = type(layer).__name__
        if kind in _PASS_THROUGH:
            continue
        if isinstance(layer, keras.layers.Rescaling):
            scale = float(np.max(np.abs(np.asarray(layer.scale, np.float64))))
            norm = "raw" if scale * 255.0 <= 4.0 else "unit"
            return norm, f"its {kind} layer {layer.name!r} (scale {scale:.6g})"
        if isinstance(layer, keras.layers.Normalization):
            mean = getattr(layer, "mean", None)
            if mean is None:
                return None, None
            top = float(np.max(np.abs(np.asarray(keras.ops.convert_to_numpy(mean)))))
            norm = "raw" if top > 2.0 else "unit"
            return norm, f"its {kind} layer {layer.name!r} (mean up to {top:.4g})"
        return None, None
    return None, None
