"""App-ready phone files: the pixels-in wrapper and the TFLite metadata embedded in it."""

from __future__ import annotations

import os

import numpy as np

import tfigkd
from tfigkd.errors import UserError
from tfigkd.export.inputs import model_pixels
from tfigkd.io import file_sha256


def app_wrapper(model, norm, splits, rgb, model_path, size=None):
    """The app-ready wrapper and the function that makes its input from uint8 images
    (resized to ``size``, the model's (H, W), when given)."""
    from tfigkd.export.mediapipe_check import rgb_pixels
    from tfigkd.export.phone import app_model

    c = model.input_shape[-1]
    if c not in (1, 3):
        raise UserError(f"{model_path} takes {c}-channel images, but phone apps feed RGB "
                        "(3 channels) or grayscale (1): export it for another target.")
    wrapped = app_model(model, norm, splits.mean, splits.std, rgb_input=rgb)
    to_rgb = c == 1 and rgb

    def feed(x_uint8):
        # Gray -> RGB first: rgb_pixels takes uint8, and it commutes with the resize.
        return model_pixels(rgb_pixels(x_uint8) if to_rgb else np.asarray(x_uint8), size)

    return wrapped, feed, to_rgb


def with_app_metadata(data, app, splits, stem, prof, quant, model_path):
    """``data`` (the app-ready file) with its TFLite metadata and labels embedded."""
    from tfigkd.export.metadata import (LABELS_FILE, classifier_metadata, embed_metadata,
                                        pixel_input_quantization)

    h, w, c = app.input_shape[1:]
    md = classifier_metadata(
        name=stem, description=f"{splits.name} image classifier exported by tfigkd "
        f"{tfigkd.__version__} for {prof.target} ({quant}) from {os.path.basename(model_path)}",
        labels_file=LABELS_FILE, num_classes=len(splits.class_names), width=w, height=h,
        mean=[0.0] * c, std=[1.0] * c, input_min=[0.0] * c, input_max=[255.0] * c,
        color_space="RGB" if c == 3 else "GRAYSCALE",
        version=f"source sha256 {file_sha256(model_path)[:16]}")
    labels = ("\n".join(splits.class_names) + "\n").encode()
    return embed_metadata(data, md, {LABELS_FILE: labels},
                          input_quantization=pixel_input_quantization(data))
