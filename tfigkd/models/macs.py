"""Parameter and multiply-add (MAC) counting for Keras models."""

from __future__ import annotations

import math

import keras
import numpy as np


def trainable_params(model) -> int:
    """Number of trainable scalars (BatchNorm moving statistics excluded)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _hw(shape):
    return int(np.prod([d for d in shape[1:-1]]))


def layer_macs(layer) -> int:
    """Multiply-adds of one forward pass of ``layer`` for a single example.

    Counts the layers that dominate inference cost: Conv2D (incl. groups),
    DepthwiseConv2D and Dense. Element-wise layers (BatchNorm, activations,
    adds, pooling) are treated as free: on deployment BN folds into the
    preceding conv and the rest is memory-bound, not MAC-bound.
    """
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = layer.output.shape
        k = int(np.prod(layer.kernel_size))
        return _hw(out) * k * int(out[-1])
    if isinstance(layer, keras.layers.Conv2D):
        out = layer.output.shape
        in_ch = int(layer.input.shape[-1])
        k = int(np.prod(layer.kernel_size))
        return _hw(out) * k * (in_ch // layer.groups) * int(out[-1])
    if isinstance(layer, keras.layers.Dense):
        in_shape = layer.input.shape
        positions = int(np.prod(in_shape[1:-1])) if len(in_shape) > 2 else 1
        return positions * int(in_shape[-1]) * layer.units
    return 0


def count_macs(model) -> int:
    """Total multiply-adds per example of a (possibly nested) functional model."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        else:
            total += layer_macs(layer)
    return int(total)


def compression_factor(teacher, student) -> float:
    """Teacher trainable parameters divided by student trainable parameters."""
    return trainable_params(teacher) / trainable_params(student)


def summarize(model, teacher=None) -> dict:
    """Parameters, MACs and (if a teacher is given) compression factor.

    Args:
        model: A built Keras model.
        teacher: Optional reference model for the compression factor.

    Returns:
        A dict with ``name``, ``trainable_params``, ``macs`` and ``cf``.
    """
    info = {"name": model.name, "trainable_params": trainable_params(model),
            "macs": count_macs(model), "cf": None}
    if teacher is not None:
        info["cf"] = compression_factor(teacher, model)
    return info


def format_summary(rows) -> str:
    """Formats ``summarize`` dicts as an aligned text table."""
    lines = [f"{'model':<24}{'params':>12}{'MACs':>14}{'CF':>9}"]
    for r in rows:
        cf = "" if r["cf"] is None else f"{r['cf']:.2f}"
        lines.append(f"{r['name']:<24}{r['trainable_params']:>12,}"
                     f"{r['macs']:>14,}{cf:>9}")
    return "\n".join(lines)


def macs_human(n: int) -> str:
    if n <= 0:
        return "0"
    units = ["", "K", "M", "G"]
    e = min(int(math.log10(n) // 3), 3)
    return f"{n / 10 ** (3 * e):.1f}{units[e]}"
