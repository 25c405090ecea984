"""The checks of an exported file in the real interpreters: LiteRT and TFLite Micro."""

from __future__ import annotations

import os
import time

from tfigkd.export.targets import check_ram
from tfigkd.export.tflite import quantize, tflite_predict


def litert_check(model_bytes, x, labels, keras_pred):
    """Runs a model in LiteRT on preprocessed ``x``; its accuracy and agreement with Keras.

    Returns:
        (dict with images, accuracy, agreement_with_keras; LiteRT's predicted classes).
    """
    pred = tflite_predict(model_bytes, x, batch_size=256).argmax(1)
    return litert_figures(pred, labels, keras_pred), pred


def litert_figures(pred, labels, keras_pred):
    """Images, accuracy and agreement with Keras of LiteRT's predicted classes ``pred``."""
    return {"images": int(len(pred)), "accuracy": float((pred == labels).mean()),
            "agreement_with_keras": float((pred == keras_pred).mean())}


def check_micro(data, prof, io, x, y, ref, lite, out_dir, stem):
    """Runs the file in TFLite Micro (smallest arena) and writes its C array; the figures."""
    from tfigkd.export.micro import micro_predict, smallest_arena, write_c_array

    inp = io["inputs"][0]
    q = quantize(x, inp["scale"], inp["zero_point"], inp["dtype"])
    arena = smallest_arena(data, q[:1])
    check_ram(prof, arena)
    t0 = time.time()
    pred = micro_predict(data, q, arena).argmax(1)
    secs = time.time() - t0
    h, c = write_c_array(data, out_dir, name=f"{c_name(stem)}_model_data", arena_size=arena)
    return {"arena_bytes": int(arena), "images": int(len(x)),
            "accuracy": float((pred == y).mean()),
            "agreement_with_litert": float((pred == lite).mean()),
            "agreement_with_keras": float((pred == ref).mean()),
            "host_seconds_per_image": secs / max(1, len(x)),
            "c_header": os.path.abspath(h), "c_source": os.path.abspath(c)}


def c_name(stem):
    """``stem`` as a C identifier (the name of the model's array)."""
    import re

    name = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    return name if not name[0].isdigit() else f"m_{name}"
