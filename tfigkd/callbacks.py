"""Keras callbacks that show what a model attends to while it trains.

``IntegratedGradientsCallback`` logs, every N epochs, the model's Integrated
Gradients maps of a few validation images to TensorBoard: the image, its
IG map and the map overlaid on it, plus the median completeness error (how
well the attributions add up to the change in the target logit). It has the
shape of tf-explain's callbacks, but uses tfigkd's IG, which keeps the
``(x - baseline)`` factor that tf-explain's ``IntegratedGradients`` omits.

``ForStudent`` hands any model-explaining callback (tf-explain's
``GradCAMCallback``, ``SmoothGradCallback``, ...) the student inside a
``tfigkd.Distiller`` instead of the Distiller itself::

    from tf_explain.callbacks.grad_cam import GradCAMCallback
    callbacks = [
        IntegratedGradientsCallback((x_val[:8], y_val[:8]), log_dir="logs/ig"),
        ForStudent(GradCAMCallback((x_val[:8], None), class_index=0,
                                   layer_name="features_3", output_dir="logs/gradcam")),
    ]
    distiller.fit(train_ds, epochs=10, callbacks=callbacks)

tf-explain needs ``layer_name`` on Keras 3 (its automatic lookup fails) and
is in the ``explain`` extra: ``pip install "tfigkd[explain]"``.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from tfigkd.errors import UserError

log = logging.getLogger(__name__)


def _explained_model(model):
    """The network to explain: a Distiller's student, else the model itself."""
    return getattr(model, "student", model)


def _unit(maps):
    """Each (H, W) map scaled to [0, 1] by its own maximum."""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return maps / np.maximum(peak, 1e-12)


def attribution_panels(images, maps, weight=0.5, cmap="inferno"):
    """Side-by-side RGB panels [image | map | overlay] in [0, 1], one per image.

    Args:
        images: (B, H, W, C) images, C = 1 or 3, values in [0, 1] (other
            ranges are min-max scaled per image for display).
        maps: (B, H, W) non-negative attribution maps.
        weight: Opacity of the map in the overlay.
        cmap: Matplotlib colormap for the map.

    Returns:
        float32 array (B, H, 3 * W, 3).
    """
    from matplotlib import colormaps

    x = np.asarray(images, np.float32)
    if x.min() < 0 or x.max() > 1:  # display only: scale each image into [0, 1]
        lo = x.reshape(len(x), -1).min(1).reshape(-1, 1, 1, 1)
        hi = x.reshape(len(x), -1).max(1).reshape(-1, 1, 1, 1)
        x = (x - lo) / np.maximum(hi - lo, 1e-12)
    rgb = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]
    heat = colormaps[cmap](_unit(np.asarray(maps, np.float32)))[..., :3].astype(np.float32)
    overlay = (1 - weight) * rgb + weight * heat
    return np.concatenate([rgb, heat, overlay], axis=2)


class IntegratedGradientsCallback(keras.callbacks.Callback):
    """Logs the model's IG maps of fixed validation images to TensorBoard.

    Args:
        validation_data: ``(images, labels)`` in the model's input space; the
            first ``max_images`` are explained. ``labels`` may be None when
            ``class_index`` is given.
        class_index: Explain this class for every image; None explains each
            image's label (what tfigkd's overlay uses).
        log_dir: TensorBoard folder (``tensorboard --logdir`` it).
        every_n_epochs: Log after epochs N, 2N, ... (and never more often:
            IG costs ``n_steps`` forward/backward passes per image).
        n_steps: IG quadrature points (Gauss-Legendre).
        baseline: IG baseline (see ``tfigkd.integrated_gradients``).
        max_images: How many images to explain.
        name: Tag prefix in TensorBoard.

    After each logged epoch, ``last_maps`` holds the (B, H, W) maps and
    ``history`` one dict per logged epoch (epoch, median completeness error).
    """

    def __init__(self, validation_data, class_index=None, log_dir="logs/ig", every_n_epochs=1,
                 n_steps=32, baseline=None, max_images=8, name="integrated_gradients"):
        super().__init__()
        images, labels = validation_data
        self.images = np.asarray(images, np.float32)[:max_images]
        if self.images.ndim != 4:
            raise UserError(f"IntegratedGradientsCallback needs (B, H, W, C) images, got shape "
                            f"{self.images.shape}.")
        if class_index is None and labels is None:
            raise UserError("IntegratedGradientsCallback needs labels in validation_data or a "
                            "class_index to explain.")
        self.targets = (np.full(len(self.images), int(class_index)) if class_index is not None
                        else np.asarray(labels).reshape(-1)[:max_images].astype(np.int64))
        if every_n_epochs < 1:
            raise UserError(f"every_n_epochs must be >= 1, got {every_n_epochs}.")
        self.log_dir, self.every, self.n_steps = str(log_dir), int(every_n_epochs), int(n_steps)
        self.baseline, self.tag = baseline, name
        self.last_maps = None
        self.history = []
        self._writer = None

    def explain(self):
        """The current model's IG maps (B, H, W) and relative completeness errors (B,).

        The relative error is |F(x) - F(baseline) - sum(IG)| / |F(x) - F(baseline)|
        for the explained class.
        """
        from tfigkd.attribution.integrated_gradients import ig_map, integrated_gradients

        model = _explained_model(self.model)
        attr, delta = integrated_gradients(model, self.images, self.targets,
                                           baseline=self.baseline, n_steps=self.n_steps,
                                           return_delta=True)
        change = attr.reshape(len(attr), -1).sum(1) + delta  # F(x) - F(baseline)
        return ig_map(attr), np.abs(delta) / np.maximum(np.abs(change), 1e-6)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        import tensorflow as tf

        maps, errors = self.explain()
        x = self.images
        rel = float(np.median(errors))
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(f"{self.tag}/image_map_overlay", attribution_panels(x, maps),
                             step=epoch, max_outputs=len(x))
            tf.summary.scalar(f"{self.tag}/median_relative_completeness_error", rel, step=epoch)
        self._writer.flush()
        self.last_maps = maps
        self.history.append({"epoch": epoch, "median_relative_completeness_error": rel})
        log.debug("Epoch %d: IG maps logged to %s (completeness error %.3g)",
                  epoch + 1, self.log_dir, rel)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ForStudent(keras.callbacks.Callback):
    """Runs ``callback`` on the student of a ``tfigkd.Distiller``.

    Callbacks that explain ``self.model`` (tf-explain's GradCAM, SmoothGrad,
    Occlusion, ...) would otherwise see the Distiller wrapper. Other models
    are passed through unchanged.

    Args:
        callback: Any Keras-style callback.
    """

    def __init__(self, callback):
        super().__init__()
        self.callback = callback

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(_explained_model(model))

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def __getattribute__(self, name):
        # Forward every on_* hook the wrapped callback has.
        if name.startswith("on_") and hasattr(object.__getattribute__(self, "callback"), name):
            return getattr(object.__getattribute__(self, "callback"), name)
        return object.__getattribute__(self, name)
