"""What a saved model takes: its input normalisation and size, and how each is documented.

A model may take another image size than the data's (a teacher at
``teacher.input_size``): every image the export feeds it is first resized to the
model's own (H, W) by ``model_pixels``, the same bilinear, antialiased resize
training used.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tfigkd.errors import UserError
from tfigkd.io import read_json
from tfigkd.layout import METRICS_FILE, TEACHER_FILE, TEACHER_METRICS
from tfigkd.models.teacher_io import resize_images, teacher_size

log = logging.getLogger(__name__)


def model_input_norm(model_path, cfg=None, override=None):
    """The preprocessing a saved model expects (one of ``teacher_io.NORMS``).

    Read from the metrics file tfigkd writes beside every model; else the
    config's teacher recipe for ``teacher.keras`` or the file ``teacher.path``
    names (an adopted teacher), and the student recipe for anything else.
    """
    if override:
        return override
    folder = os.path.dirname(os.path.abspath(model_path))
    for name in (METRICS_FILE, TEACHER_METRICS):
        meta = os.path.join(folder, name)
        if os.path.exists(meta) and (name == METRICS_FILE or
                                     os.path.basename(model_path) == TEACHER_FILE):
            norm = read_json(meta).get("input_norm")
            if norm:
                return norm
    if cfg is None:
        raise UserError(f"Cannot tell which input normalisation {model_path} expects; pass "
                        "--input-norm (e.g. unit or dataset) or --config.")
    adopted = cfg.teacher.path and os.path.abspath(os.path.expanduser(cfg.teacher.path)) == \
        os.path.abspath(model_path)
    if os.path.basename(model_path) == TEACHER_FILE or adopted:
        return cfg.teacher.train.input_norm
    return cfg.student.train.input_norm


def preprocess(x_uint8, norm, mean, std):
    """uint8 images as the model takes them (``norm``: one of ``teacher_io.NORMS``)."""
    from tfigkd.data import normalize

    return normalize(x_uint8, norm, mean, std).numpy()


def model_pixels(images, size):
    """Images as a model of input size ``size`` sees them: float32 pixels 0..255.

    Args:
        images: uint8 (N, H, W, C) images.
        size: The model's (H, W), or None to keep the images' size.

    Returns:
        A float32 array (N, *size, C); the images unchanged (as floats) when
        they already have that size.
    """
    return np.asarray(resize_images(images, size))


def model_size(model, splits, cfg=None, label="Model"):
    """The (H, W) the images must be resized to for ``model``, or None for the data's size.

    A model whose input size differs from the data's (a teacher at
    ``teacher.input_size``, or any model trained at its own resolution) is fed
    the data resized to its own size: what it was trained on, and what
    ``teacher.input_size`` does in training. Either way it is logged.
    """
    size = teacher_size(model)
    data = tuple(int(v) for v in splits.input_shape[:2])
    if size is None or size == data:
        return None
    config_size = cfg and getattr(cfg.teacher, "input_size", None)
    why = ("teacher.input_size" if config_size and tuple(map(int, config_size)) == size
           else "its own input size")
    log.info("%s takes %dx%d images and the data's are %dx%d: every image is resized to %dx%d "
             "(%s; bilinear, antialiased) for calibration and checks.", label, *size, *data,
             *size, why)
    return size


def app_norm_doc(norm, splits, inp, luminance):
    """Normalisation doc of an app-ready file: it takes pixels, the rest happens inside."""
    doc = norm_doc(norm, splits, {"dtype": "float32"})
    c = inp["shape"][-1]
    doc.pop("float_input")
    doc.update(
        model_input=(f"{'RGB' if c == 3 else 'grayscale'} pixel values 0..255 as they are "
                     f"({inp['dtype']}); "
                     + ("RGB -> luminance (0.299 R + 0.587 G + 0.114 B) and the normalisation "
                        "happen" if luminance else "the normalisation happens")
                     + " inside the model"),
        output="softmax probabilities (float32), classes in labels.txt order",
        tflite_metadata={"normalization": {"mean": [0.0] * c, "std": [1.0] * c},
                         "labels": "labels.txt (TENSOR_AXIS_LABELS)",
                         "color_space": "RGB" if c == 3 else "GRAYSCALE"})
    doc["inner_model_input"] = "x = (pixel / 255 - mean) / std, per channel"
    return doc


def norm_doc(norm, splits, inp):
    """Normalisation doc of a file that takes model inputs (``inp``: its input tensor)."""
    from tfigkd.models.teacher_io import affine

    m, s = affine(norm, splits.mean, splits.std, len(splits.mean))
    mean, std = [float(v) for v in m], [float(v) for v in s]
    doc = {"input_norm": norm, "mean": mean, "std": std,
           "float_input": "x = (pixel / 255 - mean) / std, per channel, pixel in 0..255"}
    if inp["dtype"] in ("int8", "uint8"):
        doc["quantised_input"] = (f"q = clip(round(x / {inp['scale']:.9g}) + {inp['zero_point']}, "
                                  f"{np.iinfo(inp['dtype']).min}, {np.iinfo(inp['dtype']).max})")
    return doc
