"""Overlay map sources besides the teacher's IG for the true class, stored like IG maps.

Each source is a per-image (H, W) non-negative map of the training split,
computed once from the teacher and kept in its own fingerprinted store (same
format as the IG store, ``tfigkd.attribution.store``); its settings, which
include the source's name, are recorded in every shard's sidecar, so a
store made with other settings, or for another source, is refused.

- ``ig``: the teacher's IG for the true class (the paper's text), ``DIR/ig``.
- ``ig_all_classes``: the sum over all classes of the IG map of each class
  (what the authors' code computes), ``DIR/attributions/ig_all_classes``.
- ``gradcam``: Grad-CAM of the true class from tf-explain's ``GradCAM``
  static methods (guided gradients by default), ReLU, resized bilinearly to
  the image size.
- ``smoothgrad``: tf-explain's ``SmoothGrad`` (mean input gradient of the
  cross-entropy over noisy copies), reduced over channels with sum |.|.

tf-explain's ``explain`` methods return visualised grids and its automatic
Grad-CAM layer lookup uses a Keras 2 attribute, so only its static methods
that return raw maps are used, with the layer named (or found here).
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from tfigkd.attribution.settings import IGSettings, ig_settings
from tfigkd.errors import UserError
from tfigkd.layout import ATTRIBUTIONS_DIR, IG_DIR

log = logging.getLogger(__name__)

from tfigkd.modes import STORED_SOURCES  # noqa: E402  (the registry of overlay sources)


@dataclass
class IGAllClassesSettings(IGSettings):
    """IG settings plus the source name: the sum over classes of each class's map."""
    source: str = "ig_all_classes"


@dataclass
class GradCAMSettings:
    source: str = "gradcam"
    layer_name: str = "auto"  # "auto": the last layer with a spatial output
    use_guided_grads: bool = True
    resize: str = "bilinear"


@dataclass
class SmoothGradSettings:
    source: str = "smoothgrad"
    num_samples: int = 16
    noise: float = 0.15      # std of the noise, in [0, 1] pixel units
    seed: int = 0
    reduce: str = "sum_abs"


def store_dir(out_dir, source):
    """Folder of a source's store: ``DIR/ig`` for IG, ``DIR/attributions/<source>`` otherwise."""
    if source == "ig":
        return os.path.join(out_dir, IG_DIR)
    return os.path.join(out_dir, ATTRIBUTIONS_DIR, source)


def check_source(source):
    if source not in STORED_SOURCES:
        raise UserError(f"Unknown attribution source {source!r}; use one of "
                        f"{', '.join(STORED_SOURCES)}.")


def default_gradcam_layer(model):
    """The last layer with a 4-D output of more than 1x1 (Grad-CAM's last convolutional layer)."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = None if shape is None else tuple(shape.shape)
        if shape is not None and len(shape) == 4 and (shape[1] or 0) * (shape[2] or 0) > 1:
            return layer.name
    raise UserError("The teacher has no layer with a spatial (4-D) output for Grad-CAM; "
                    "set controls.gradcam_layer to a convolutional layer's name.")


def source_settings(cfg, source):
    """The settings dataclass recorded in (and checked against) ``source``'s store.

    Args:
        cfg: ``ExperimentConfig``.
        source: One of ``STORED_SOURCES``.
    """
    check_source(source)
    if source == "ig":
        return ig_settings(cfg.ig)
    if source == "ig_all_classes":  # the same IG settings (adaptive ones too), summed over classes
        return IGAllClassesSettings(**asdict(ig_settings(cfg.ig)))
    c = cfg.controls
    if source == "gradcam":
        # "auto" is resolved in the teacher (whose hash the store records), so it
        # always names the same layer for one store.
        return GradCAMSettings(layer_name=c.gradcam_layer or "auto",
                               use_guided_grads=c.gradcam_guided)
    return SmoothGradSettings(num_samples=c.smoothgrad_samples, noise=c.smoothgrad_noise,
                              seed=c.smoothgrad_seed)


def make_source_compute_fn(source, teacher, cfg, input_norm, mean, std, settings,
                           strategy=None):
    """``fn(x_uint8, labels) -> (maps, delta, rel_error)`` of a source, for ``write_store``.

    Grad-CAM and SmoothGrad have no completeness property: their delta and
    relative error are recorded as zeros. ``strategy``: local replicas IG
    spreads its work over (``make_compute_fn``).
    """
    from tfigkd.data import normalize

    if source == "ig":
        from tfigkd.attribution.precompute import make_compute_fn

        return make_compute_fn(teacher, settings, input_norm, mean, std, strategy)
    if source == "ig_all_classes":
        return _ig_all_classes_fn(teacher, settings, input_norm, mean, std, strategy)

    def prep(x_uint8):
        return np.asarray(normalize(x_uint8, input_norm, mean, std), np.float32)

    if source == "gradcam":
        return _gradcam_fn(teacher, settings, prep)
    # Noise in [0, 1] pixel units, converted to the teacher's input units.
    scale = float(np.mean(std)) if input_norm == "dataset" else 1.0
    return _smoothgrad_fn(teacher, settings, prep, settings.noise / scale)


def _ig_all_classes_fn(teacher, settings, input_norm, mean, std, strategy=None):
    from tfigkd.attribution.precompute import make_compute_fn

    per_class = make_compute_fn(teacher, settings, input_norm, mean, std, strategy)
    num_classes = int(teacher.output.shape[-1])

    def compute(x_uint8, labels):
        total = delta = rel = 0.0
        for c in range(num_classes):
            m, d, r = per_class(x_uint8, np.full(len(x_uint8), c))
            total = total + m
            # The worst class's completeness error stands for the image.
            delta = np.maximum(delta, np.abs(d))
            rel = np.maximum(rel, r)
        return total, delta, rel

    return compute


def _by_class(labels):
    labels = np.asarray(labels).reshape(-1)
    return [(int(c), np.flatnonzero(labels == c)) for c in np.unique(labels)]


def _gradcam_fn(teacher, settings, prep):
    import tensorflow as tf
    from tf_explain.core.grad_cam import GradCAM

    layer = settings.layer_name
    if layer == "auto":
        layer = default_gradcam_layer(teacher)
        log.info("Grad-CAM layer: %s (the teacher's last layer with a spatial output).", layer)
    elif layer not in {lay.name for lay in teacher.layers}:
        raise UserError(f"controls.gradcam_layer: the teacher has no layer {layer!r}; name one "
                        f"of its convolutional layers, e.g. {default_gradcam_layer(teacher)!r}.")

    def compute(x_uint8, labels):
        x = prep(x_uint8)
        out = np.zeros(x.shape[:3], np.float32)
        # tf-explain explains one class per call: one call per class in the batch.
        for c, rows in _by_class(labels):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its [model.inputs] nesting warns on Keras 3
                conv, grads = GradCAM.get_gradients_and_filters(
                    teacher, x[rows], layer, c, settings.use_guided_grads)
            cams = tf.stack(GradCAM.generate_ponderated_output(conv, grads))[..., None]
            cams = tf.image.resize(tf.nn.relu(cams), x.shape[1:3], method=settings.resize)
            out[rows] = cams.numpy()[..., 0]
        zeros = np.zeros(len(x), np.float32)
        return out, zeros, zeros

    return compute


def _smoothgrad_fn(teacher, settings, prep, noise):
    import keras
    import tensorflow as tf
    from tf_explain.core.smoothgrad import SmoothGrad

    from tfigkd.attribution.integrated_gradients import ig_map

    # tf-explain's loss is a cross-entropy on probabilities; the teacher gives logits.
    inp = keras.Input(teacher.input_shape[1:])
    probs = keras.Model(inp, keras.layers.Softmax()(teacher(inp)))

    def compute(x_uint8, labels):
        x = prep(x_uint8)
        out = np.zeros(x.shape[:3], np.float32)
        # tf-explain draws its noise from NumPy's global generator: seed it from the
        # images and the settings so a shard's maps do not depend on which worker
        # or batch order made them, and restore the caller's state afterwards.
        state = np.random.get_state()
        try:
            np.random.seed(zlib.crc32(np.ascontiguousarray(x_uint8).tobytes()) ^ settings.seed)
            for c, rows in _by_class(labels):
                noisy = SmoothGrad.generate_noisy_images(x[rows], settings.num_samples, noise)
                grads = SmoothGrad.get_averaged_gradients(tf.constant(noisy), probs, c,
                                                          settings.num_samples)
                out[rows] = ig_map(grads.numpy(), settings.reduce)
        finally:
            np.random.set_state(state)
        zeros = np.zeros(len(x), np.float32)
        return out, zeros, zeros

    return compute

