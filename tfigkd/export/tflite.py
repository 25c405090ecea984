"""TFLite conversion (TFLiteConverter.from_keras_model) and checking in LiteRT."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import tensorflow as tf

from tfigkd.errors import UserError
from tfigkd.export.targets import IO_TYPES, QUANTS
from tfigkd.io import atomic_path


def convert(model, quant="int8", representative=None, io_type="int8", output_type=None):
    """Converts a Keras model to TFLite bytes.

    Args:
        model: Keras model (float inputs in its own input space).
        quant: "fp32", "fp16", "dynamic" or "int8" (full integer).
        representative: For int8, float32 array of calibration inputs
            (already preprocessed as the model expects).
        io_type: For int8: the input/output tensor type, "int8", "uint8"
            (Coral flows) or "float32" (quantise/dequantise inside the model).
        output_type: For int8: the output tensor type if not ``io_type``
            (phone exports: uint8 pixels in, float32 probabilities out).

    Returns:
        The ``.tflite`` flatbuffer as bytes.
    """
    if quant not in QUANTS:
        raise UserError(f"quant must be one of {QUANTS}, got {quant!r}.")
    if io_type not in IO_TYPES:
        raise UserError(f"io_type must be one of {IO_TYPES}, got {io_type!r}.")
    output_type = output_type or io_type
    if output_type not in IO_TYPES:
        raise UserError(f"output_type must be one of {IO_TYPES}, got {output_type!r}.")
    # from_keras_model, never from_concrete_functions: the latter silently
    # produces broken models with Keras 3 (see the project brief).
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        if representative is None or len(representative) == 0:
            raise UserError("int8 conversion needs representative images from the training split.")
        rep = np.asarray(representative, np.float32)

        def gen():
            for i in range(len(rep)):
                yield [rep[i:i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type != "float32":
            conv.inference_input_type = getattr(tf, io_type)
        if output_type != "float32":
            conv.inference_output_type = getattr(tf, output_type)
    # Keras' export step prints every captured variable to stdout; keep the CLI readable.
    with contextlib.redirect_stdout(io.StringIO()):
        return conv.convert()


def save_tflite(data, path):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def quantize(x, scale, zero_point, dtype):
    """Float model inputs -> the integer input tensor: clip(round(x / scale) + zp)."""
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x) / scale + zero_point), info.min, info.max).astype(dtype)


def tflite_predict(model_bytes_or_path, images, batch_size=64, num_threads=None):
    """Runs a ``.tflite`` model in the LiteRT interpreter; returns float outputs.

    Args:
        model_bytes_or_path: Flatbuffer bytes or a file path.
        images: float32 model inputs (N, H, W, C), preprocessed as for Keras.
        batch_size: Inputs per invoke (the input tensor is resized).
        num_threads: Interpreter threads.

    Returns:
        (N, classes) float32 outputs, de-quantised for int8 models.
    """
    from ai_edge_litert.interpreter import Interpreter

    kw = {"model_content": model_bytes_or_path} if isinstance(model_bytes_or_path, bytes) \
        else {"model_path": str(model_bytes_or_path)}
    it = Interpreter(num_threads=num_threads, **kw)
    inp = it.get_input_details()[0]
    outs = []
    images = np.asarray(images, np.float32)
    # Only the batch size is resized: a fully convolutional model would otherwise run
    # silently on images of another size than the one it was converted for.
    fixed = [int(v) for v in inp["shape_signature"][1:]]
    if any(f not in (-1, g) for f, g in zip(fixed, images.shape[1:])) \
            or len(fixed) != images.ndim - 1:
        raise ValueError(f"the model takes {tuple(fixed)} inputs, got images of "
                         f"{tuple(images.shape[1:])}; resize them to the model's size first.")
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        it.resize_tensor_input(inp["index"], [len(x), *x.shape[1:]])
        it.allocate_tensors()
        inp_d, out_d = it.get_input_details()[0], it.get_output_details()[0]
        if inp_d["dtype"] in (np.int8, np.uint8):
            scale, zp = inp_d["quantization"]
            x = quantize(x, scale, zp, inp_d["dtype"])
        it.set_tensor(inp_d["index"], x)
        it.invoke()
        y = it.get_tensor(out_d["index"])
        if out_d["dtype"] in (np.int8, np.uint8):
            scale, zp = out_d["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        outs.append(y.astype(np.float32))
    return np.concatenate(outs)
