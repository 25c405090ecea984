"""``tfigkd export``: one Keras model -> a checked ``.tflite`` for a target.

Writes, into the output folder:
  ``{stem}_{target}_{quant}.tflite``  the model
  ``labels.txt``                      one class name per line, in output order
  ``{stem}_{target}_{quant}.json``    IO scale/zero point, normalisation, classes,
                                      target, ops, and every check's result
and for ``mcu`` also ``{stem}_model_data.h/.cc`` (the C array), and for
``coral`` the ``edgetpu_compiler`` output when the compiler is installed.
"""

from __future__ import annotations

import os
import time

import numpy as np

import tfigkd
from tfigkd.errors import UserError
from tfigkd.export.flatbuffer import io_details, model_ops
from tfigkd.export.targets import check_ram, check_static, load_profile, resolve_quant
from tfigkd.export.tflite import convert, quantize, save_tflite, tflite_predict
from tfigkd.io import file_sha256, read_json, write_json
from tfigkd.models import check_fits_data, load_model_file


def model_input_norm(model_path, cfg=None, override=None):
    """The preprocessing a saved model expects: "unit" or "dataset".

    Read from the metrics file tfigkd writes beside every model; else the
    config's student (or teacher, for ``teacher.keras``) recipe.
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
                        "--input-norm unit|dataset or --config.")
    if os.path.basename(model_path) == "teacher.keras":
        return cfg.teacher.train.input_norm
    return cfg.student.train.input_norm


def _preprocess(x_uint8, norm, mean, std):
    from tfigkd.data import normalize

    return normalize(x_uint8, norm, mean, std).numpy()


def representative_images(splits, input_norm, count, seed=0):
    """int8 calibration inputs: ``count`` training images (seeded sample, index order),
    preprocessed as the model expects."""
    pos = np.sort(np.random.default_rng(seed).permutation(len(splits.train))[:count])
    return _preprocess(splits.train.x[pos], input_norm, splits.mean, splits.std)


def litert_check(model_bytes, x, labels, keras_pred):
    """Runs a model in LiteRT on preprocessed ``x``; its accuracy and agreement with Keras.

    Returns:
        (dict with images, accuracy, agreement_with_keras; LiteRT's predicted classes).
    """
    pred = tflite_predict(model_bytes, x, batch_size=256).argmax(1)
    return {"images": int(len(x)), "accuracy": float((pred == labels).mean()),
            "agreement_with_keras": float((pred == keras_pred).mean())}, pred


def export_model(model_path, target, splits, quant=None, out_dir=None, input_norm=None,
                 cfg=None, calibration_images=256, check_images=None, micro_images=300,
                 profile=None, name=None, seed=0, verbose=True):
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
    check_fits_data(model, splits, model_path)
    stem = name or os.path.basename(os.path.dirname(os.path.abspath(model_path)))
    if stem in ("", "."):
        stem = os.path.splitext(os.path.basename(model_path))[0]
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(model_path)), "export")
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"{stem}_{prof.target}_{quant}")

    t0 = time.time()
    rep = representative_images(splits, norm, calibration_images, seed) if quant == "int8" else None
    io_type = prof.io_type if quant == "int8" else "float32"
    data = convert(model, quant, rep, io_type=io_type)
    convert_s = time.time() - t0
    ops, io = model_ops(data), io_details(data)
    warnings = check_static(prof, ops, io, len(data))  # raises before anything is written

    checks = {}
    test = splits.test if check_images is None else splits.test.take(np.arange(
        min(check_images, len(splits.test))))
    x_test = _preprocess(test.x, norm, splits.mean, splits.std)
    ref = model.predict(x_test, batch_size=256, verbose=0).argmax(1)
    keras_acc = float((ref == test.y).mean())
    checks["litert"], lite = litert_check(data, x_test, test.y, ref)
    checks["litert"].update(keras_accuracy=keras_acc,
                            accuracy_drop=keras_acc - checks["litert"]["accuracy"])
    if prof.runtime == "tflite-micro":
        n = micro_images
        checks["tflm"] = _check_micro(data, prof, io, x_test[:n], test.y[:n], ref[:n], lite[:n],
                                      out_dir, stem)
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
    inp = io["inputs"][0]
    meta = {
        "tfigkd_version": tfigkd.__version__, "target": prof.target, "profile": prof.source,
        "runtime": prof.runtime, "quant": quant, "path": os.path.abspath(tflite_path),
        "bytes": len(data), "sha256": file_sha256(tflite_path),
        "source_model": os.path.abspath(model_path), "source_sha256": file_sha256(model_path),
        "input": inp, "output": io["outputs"][0],
        "normalisation": _norm_doc(norm, splits, inp),
        "class_names": list(splits.class_names), "labels_file": os.path.abspath(labels),
        "ops": ops, "checks": checks, "warnings": warnings, "convert_seconds": convert_s,
        "calibration_images": 0 if rep is None else int(len(rep)),
        "data_fingerprint": splits.fingerprint,
    }
    write_json(base + ".json", meta)
    if verbose:
        c = checks["litert"]
        print(f"{tflite_path}: {len(data):,} bytes; LiteRT accuracy {c['accuracy']:.4f} "
              f"(Keras {c['keras_accuracy']:.4f}, agreement {c['agreement_with_keras']:.2%})")
        if "tflm" in checks:
            t = checks["tflm"]
            print(f"TFLite Micro: arena {t['arena_bytes']:,} bytes, accuracy {t['accuracy']:.4f} "
                  f"on {t['images']} images; C array {t['c_source']}")
        for w in warnings:
            print(f"note: {w}")
    return meta


def _norm_doc(norm, splits, inp):
    mean = [0.0] * len(splits.mean) if norm == "unit" else [float(v) for v in splits.mean]
    std = [1.0] * len(splits.std) if norm == "unit" else [float(v) for v in splits.std]
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
