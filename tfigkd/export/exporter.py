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
from tfigkd.errors import UserError
from tfigkd.export.flatbuffer import io_details, model_ops
from tfigkd.export.mediapipe_check import describe
from tfigkd.export.targets import check_ram, check_static, load_profile, resolve_quant
from tfigkd.export.tflite import convert, quantize, save_tflite, tflite_predict
from tfigkd.io import file_sha256, read_json, write_json
from tfigkd.models import check_fits_data, load_model_file
from tfigkd.data.lazy import is_lazy
from tfigkd.models.teacher_io import resize_images, teacher_size

log = logging.getLogger(__name__)

MEDIAPIPE_STREAMED_IMAGES = 2000
CHECK_BLOCK_BYTES = 64 << 20  # float32 model inputs per block when the test split is streamed


def model_input_norm(model_path, cfg=None, override=None):
    """The preprocessing a saved model expects (one of ``teacher_io.NORMS``).

    Read from the metrics file tfigkd writes beside every model; else the
    config's teacher recipe for ``teacher.keras`` or the file ``teacher.path``
    names (an adopted teacher), and the student recipe for anything else.
    """
    if override:
        return override
    folder = os.path.dirname(os.path.abspath(model_path))
    for name in ("metrics.json", "teacher_metrics.json"):
        meta = os.path.join(folder, name)
        if os.path.exists(meta) and (name == "metrics.json" or
                                     os.path.basename(model_path) == "teacher.keras"):
            norm = read_json(meta).get("input_norm")
            if norm:
                return norm
    if cfg is None:
        raise UserError(f"Cannot tell which input normalisation {model_path} expects; pass "
                        "--input-norm (e.g. unit or dataset) or --config.")
    adopted = cfg.teacher.path and os.path.abspath(os.path.expanduser(cfg.teacher.path)) == \
        os.path.abspath(model_path)
    if os.path.basename(model_path) == "teacher.keras" or adopted:
        return cfg.teacher.train.input_norm
    return cfg.student.train.input_norm


def _preprocess(x_uint8, norm, mean, std):
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


def check_subset(test, check_images=None):
    """The test images a secondary check (bench, compress, check-phone) runs on, in memory.

    The first ``check_images`` (None: all); a test split streamed from disk
    (data larger than memory) without a count gets its first
    ``MEDIAPIPE_STREAMED_IMAGES`` instead, which is logged. ``export_model``
    itself checks a streamed split completely, in blocks.
    """
    from tfigkd.data import Subset

    n = len(test) if check_images is None else min(int(check_images), len(test))
    if check_images is None and is_lazy(test.x) and n > MEDIAPIPE_STREAMED_IMAGES:
        log.info("The test split is streamed from disk: checking its first %d of %d images "
                 "(--check-images to change).", MEDIAPIPE_STREAMED_IMAGES, n)
        n = MEDIAPIPE_STREAMED_IMAGES
    sub = test.take(np.arange(n))
    return Subset(np.asarray(sub.x), sub.y, sub.index) if is_lazy(sub.x) else sub


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


def representative_images(splits, input_norm, count, seed=0, size=None):
    """int8 calibration inputs: ``count`` training images (seeded sample, index order),
    resized to ``size`` (the model's (H, W); None: as they are) and preprocessed as the
    model expects."""
    pos = _calibration_rows(splits, count, seed)
    return _preprocess(model_pixels(splits.train.x[pos], size), input_norm, splits.mean,
                       splits.std)


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
        conv_model, feed, luminance = _app_model(model, norm, splits, rgb, model_path, size)
        rep = (feed(splits.train.x[_calibration_rows(splits, calibration_images, seed)])
               if quant == "int8" else None)
    else:
        conv_model = model
        rep = representative_images(splits, norm, calibration_images, seed, size) \
            if quant == "int8" else None
    data = convert(conv_model, quant, rep, io_type=io_type, output_type=out_type)
    if prof.app_ready:
        data = _with_metadata(data, conv_model, splits, stem, prof, quant, model_path)
    convert_s = time.time() - t0
    ops, io = model_ops(data), io_details(data)
    warnings = check_static(prof, ops, io, len(data))  # raises before anything is written

    checks = {}
    test = splits.test if check_images is None else splits.test.take(np.arange(
        min(check_images, len(splits.test))))
    def inputs(x):
        return _preprocess(model_pixels(x, size), norm, splits.mean, splits.std)

    # Test images streamed from disk (data larger than memory) are checked in blocks
    # of ~64 MB of model inputs; in-memory ones in one block, as before.
    ref, lite = [], []
    for block in _check_blocks(test, size, 3 if prof.app_ready else None):
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
        checks["tflm"] = _check_micro(data, prof, io, inputs(np.asarray(test.x[:n])), test.y[:n],
                                      ref[:n], lite[:n], out_dir, stem)
    tflite_path = base + ".tflite"
    save_tflite(data, tflite_path)
    if prof.runtime == "edgetpu":
        from tfigkd.export.coral import compile_edgetpu

        checks["edgetpu_compiler"] = compile_edgetpu(tflite_path, out_dir)
        if not checks["edgetpu_compiler"]["ran"]:
            warnings.append(checks["edgetpu_compiler"]["message"])
    labels = os.path.join(out_dir, "labels.txt")
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
        "normalisation": (_app_norm_doc(norm, splits, inp, luminance) if prof.app_ready
                          else _norm_doc(norm, splits, inp)),
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


def _check_blocks(test, size, channels=None):
    """Position blocks of the test split for the export checks (one block unless streamed).

    ``channels``: of the largest input a block is turned into (3 for the RGB
    feed of an app-ready file of a grayscale model); default: the data's.
    """
    n = len(test)
    if not is_lazy(test.x):
        yield slice(0, n)
        return
    h, w = size or test.x.shape[1:3]
    c = max(int(test.x.shape[-1]), int(channels or 0))
    rows = max(1, CHECK_BLOCK_BYTES // (4 * int(h) * int(w) * c))
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


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


def _calibration_rows(splits, count, seed):
    """The training rows ``representative_images`` uses (same seeded sample)."""
    return np.sort(np.random.default_rng(seed).permutation(len(splits.train))[:count])


def _app_model(model, norm, splits, rgb, model_path, size=None):
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


def _with_metadata(data, app, splits, stem, prof, quant, model_path):
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


def _app_norm_doc(norm, splits, inp, luminance):
    """Normalisation doc of an app-ready file: it takes pixels, the rest happens inside."""
    doc = _norm_doc(norm, splits, {"dtype": "float32"})
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


def _norm_doc(norm, splits, inp):
    from tfigkd.models.teacher_io import affine

    m, s = affine(norm, splits.mean, splits.std, len(splits.mean))
    mean, std = [float(v) for v in m], [float(v) for v in s]
    doc = {"input_norm": norm, "mean": mean, "std": std,
           "float_input": "x = (pixel / 255 - mean) / std, per channel, pixel in 0..255"}
    if inp["dtype"] in ("int8", "uint8"):
        doc["quantised_input"] = (f"q = clip(round(x / {inp['scale']:.9g}) + {inp['zero_point']}, "
                                  f"{np.iinfo(inp['dtype']).min}, {np.iinfo(inp['dtype']).max})")
    return doc


def _check_micro(data, prof, io, x, y, ref, lite, out_dir, stem):
    from tfigkd.export.micro import micro_predict, smallest_arena, write_c_array

    inp = io["inputs"][0]
    q = quantize(x, inp["scale"], inp["zero_point"], inp["dtype"])
    arena = smallest_arena(data, q[:1])
    check_ram(prof, arena)
    t0 = time.time()
    pred = micro_predict(data, q, arena).argmax(1)
    secs = time.time() - t0
    h, c = write_c_array(data, out_dir, name=f"{_c_name(stem)}_model_data", arena_size=arena)
    return {"arena_bytes": int(arena), "images": int(len(x)),
            "accuracy": float((pred == y).mean()),
            "agreement_with_litert": float((pred == lite).mean()),
            "agreement_with_keras": float((pred == ref).mean()),
            "host_seconds_per_image": secs / max(1, len(x)),
            "c_header": os.path.abspath(h), "c_source": os.path.abspath(c)}


def _c_name(stem):
    import re

    name = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    return name if not name[0].isdigit() else f"m_{name}"
