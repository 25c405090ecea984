"""``tfigkd export``: one Keras model -> a checked ``.tflite`` for a target.

Writes, into the output folder:
  ``{stem}_{target}_{quant}.tflite``  the model
  ``labels.txt``                      one class name per line, in output order
  ``{stem}_{target}_{quant}.json``    IO scale/zero point, normalisation, classes,
                                      target, ops, and every check's result
                                      (LiteRT, and MediaPipe's ImageClassifier)
Phone files are app-ready (``tfigkd.export.phone``): pixels in, probabilities
out, TFLite metadata with the labels embedded.
and for ``mcu`` also ``{stem}_model_data.h/.cc`` (the C array), and for
``coral`` the ``edgetpu_compiler`` output when the compiler is installed.

A model may take another image size than the data's (a teacher at
``teacher.input_size``): every image the export feeds it (int8 calibration,
the Keras and LiteRT checks, the app-ready file, TFLite Micro) is first
resized to the model's own (H, W) by ``model_pixels``, the same bilinear,
antialiased resize training used. Only the MediaPipe check gets the
original pixels: MediaPipe's ImageClassifier resizes frames itself, as it
does in an app.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

import tfigkd
from tfigkd.data.lazy import is_lazy
from tfigkd.export.app_ready import app_wrapper, with_app_metadata
# Each job of the export lives in its own module; the names used from here before
# the split stay importable from here.
from tfigkd.export.checks import check_micro, litert_check, litert_figures  # noqa: F401
from tfigkd.export.flatbuffer import io_details, model_ops
from tfigkd.export.inputs import (app_norm_doc, model_input_norm, model_pixels,  # noqa: F401
                                  model_size, norm_doc, preprocess)
from tfigkd.export.mediapipe_check import describe
from tfigkd.export.sampling import (CHECK_BLOCK_BYTES, MEDIAPIPE_STREAMED_IMAGES,  # noqa: F401
                                    calibration_rows, check_blocks, check_subset,
                                    representative_images)
from tfigkd.export.targets import check_static, load_profile, resolve_quant
from tfigkd.export.tflite import convert, save_tflite, tflite_predict
from tfigkd.io import file_sha256, write_json
from tfigkd.layout import LABELS_FILE
from tfigkd.models import check_fits_data, load_model_file

log = logging.getLogger(__name__)


def export_model(model_path, target, splits, quant=None, out_dir=None, input_norm=None,
                 cfg=None, calibration_images=256, check_images=None, micro_images=300,
                 profile=None, name=None, seed=0, rgb_input=None, verbose=True):
    """Exports ``model_path`` for ``target`` and checks the file in the real interpreters.

    Args:
        model_path: A ``.keras`` logits model.
        target: "phone", "coral", "mcu" or a profile ``.yaml`` path.
        splits: ``SplitData``: the representative set comes from ``splits.train``
            (int8), the checks run on ``splits.test``.
        quant: fp32, fp16, dynamic or int8; default: the target's default.
        out_dir: Output folder (default: beside the model, ``export/``).
        input_norm: Override the model's input normalisation.
        cfg: The experiment config (fallback for the normalisation).
        calibration_images: Training images for int8 calibration.
        check_images: Test images for the LiteRT check (None: all).
        micro_images: Test images run through TFLite Micro (mcu target).
        profile: A loaded ``TargetProfile`` (overrides ``target``).
        name: File stem (default: the model folder's name).
        seed: Seed of the calibration sample.
        rgb_input: App-ready exports of grayscale models: take RGB pixels and
            convert them to luminance inside the model (default: the profile's
            ``rgb_input``, on for phone).

    Returns:
        The metadata dict also written as JSON.

    Raises:
        TargetCheckError: If the model breaks the target's limits.
        MicroError: If TFLite Micro cannot run it.
    """
    prof = profile or load_profile(target)
    quant = resolve_quant(prof, quant)
    model = load_model_file(model_path, "--model")
    norm = model_input_norm(model_path, cfg, input_norm)
    size = model_size(model, splits, cfg, model_path)
    check_fits_data(model, splits, model_path, size)
    stem = name or os.path.basename(os.path.dirname(os.path.abspath(model_path)))
    if stem in ("", "."):
        stem = os.path.splitext(os.path.basename(model_path))[0]
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(model_path)), "export")
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"{stem}_{prof.target}_{quant}")

    t0 = time.time()
    io_type = prof.io_type if quant == "int8" else "float32"
    out_type = (prof.output_type or prof.io_type) if quant == "int8" else "float32"
    if prof.app_ready:
        rgb = prof.rgb_input if rgb_input is None else bool(rgb_input)
        conv_model, feed, luminance = app_wrapper(model, norm, splits, rgb, model_path, size)
        rep = (feed(splits.train.x[calibration_rows(splits, calibration_images, seed)])
               if quant == "int8" else None)
    else:
        conv_model = model
        rep = representative_images(splits, norm, calibration_images, seed, size) \
            if quant == "int8" else None
    data = convert(conv_model, quant, rep, io_type=io_type, output_type=out_type)
    if prof.app_ready:
        data = with_app_metadata(data, conv_model, splits, stem, prof, quant, model_path)
    convert_s = time.time() - t0
    ops, io = model_ops(data), io_details(data)
    warnings = check_static(prof, ops, io, len(data))  # raises before anything is written

    checks = {}
    test = splits.test if check_images is None else splits.test.take(np.arange(
        min(check_images, len(splits.test))))
    def inputs(x):
        return preprocess(model_pixels(x, size), norm, splits.mean, splits.std)

    # Test images streamed from disk (data larger than memory) are checked in blocks
    # of ~64 MB of model inputs; in-memory ones in one block, as before.
    ref, lite = [], []
    for block in check_blocks(test, size, 3 if prof.app_ready else None):
        x_block = np.asarray(test.x[block]) if is_lazy(test.x) else test.x
        x_in = inputs(x_block)
        ref.append(model.predict(x_in, batch_size=256, verbose=0).argmax(1))
        # The file runs on what it takes: pixels for app-ready files, else model inputs.
        lite.append(tflite_predict(data, feed(x_block) if prof.app_ready else x_in,
                                   batch_size=256).argmax(1))
    ref, lite = np.concatenate(ref), np.concatenate(lite)
    keras_acc = float((ref == test.y).mean())
    checks["litert"] = litert_figures(lite, test.y, ref)
    checks["litert"].update(keras_accuracy=keras_acc,
                            accuracy_drop=keras_acc - checks["litert"]["accuracy"])
    if prof.runtime == "tflite-micro":
        n = min(micro_images, len(test))
        checks["tflm"] = check_micro(data, prof, io, inputs(np.asarray(test.x[:n])), test.y[:n],
                                      ref[:n], lite[:n], out_dir, stem)
    tflite_path = base + ".tflite"
    save_tflite(data, tflite_path)
    if prof.runtime == "edgetpu":
        from tfigkd.export.coral import compile_edgetpu

        checks["edgetpu_compiler"] = compile_edgetpu(tflite_path, out_dir)
        if not checks["edgetpu_compiler"]["ran"]:
            warnings.append(checks["edgetpu_compiler"]["message"])
    labels = os.path.join(out_dir, LABELS_FILE)
    with open(labels, "w") as f:
        f.write("\n".join(splits.class_names) + "\n")
    from tfigkd.export.mediapipe_check import mediapipe_check

    # MediaPipe classifies frame by frame; streamed test sets are checked on their first
    # MEDIAPIPE_STREAMED_IMAGES images (the count is in the result).
    n_mp = min(len(test), MEDIAPIPE_STREAMED_IMAGES) if is_lazy(test.x) else len(test)
    checks["mediapipe"] = mediapipe_check(tflite_path, np.asarray(test.x[:n_mp]), test.y[:n_mp],
                                          lite[:n_mp], splits.class_names)
    inp = io["inputs"][0]
    meta = {
        "tfigkd_version": tfigkd.__version__, "target": prof.target, "profile": prof.source,
        "runtime": prof.runtime, "quant": quant, "path": os.path.abspath(tflite_path),
        "bytes": len(data), "sha256": file_sha256(tflite_path),
        "source_model": os.path.abspath(model_path), "source_sha256": file_sha256(model_path),
        "input": inp, "output": io["outputs"][0],
        "normalisation": (app_norm_doc(norm, splits, inp, luminance) if prof.app_ready
                          else norm_doc(norm, splits, inp)),
        "app_ready": bool(prof.app_ready),
        "class_names": list(splits.class_names), "labels_file": os.path.abspath(labels),
        "ops": ops, "checks": checks, "warnings": warnings, "convert_seconds": convert_s,
        "calibration_images": 0 if rep is None else int(len(rep)),
        "image_resize": (None if size is None else {
            "from": [int(v) for v in splits.input_shape[:2]], "to": list(size),
            "method": "bilinear, antialiased (tf.image.resize)",
            "applied_to": "calibration, Keras/LiteRT/TFLite Micro checks (MediaPipe resizes "
                          "frames itself)"}),
        "data_fingerprint": splits.fingerprint,
    }
    write_json(base + ".json", meta)
    for line in export_summary(meta):
        log.log(logging.INFO if verbose else logging.DEBUG, "%s", line)
    return meta


def export_summary(meta):
    """Human-readable lines about one export (what ``tfigkd export`` prints)."""
    c = meta["checks"]["litert"]
    lines = [f"{meta['path']}: {meta['bytes']:,} bytes; LiteRT accuracy {c['accuracy']:.4f} "
             f"(Keras {c['keras_accuracy']:.4f}, agreement {c['agreement_with_keras']:.2%})"]
    if "tflm" in meta["checks"]:
        t = meta["checks"]["tflm"]
        lines.append(f"TFLite Micro: arena {t['arena_bytes']:,} bytes, accuracy "
                     f"{t['accuracy']:.4f} on {t['images']} images; C array {t['c_source']}")
    lines.append(describe(meta["checks"]["mediapipe"]))
    lines += [f"note: {w}" for w in meta["warnings"]]
    return lines
