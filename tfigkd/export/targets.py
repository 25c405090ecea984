"""Deployment target profiles (``tflite/{phone,coral,mcu}.yaml``) and their static checks."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import yaml

from tfigkd.errors import UserError

# The names every front end offers (cli choices, config checks) are these ones.
TARGETS = ("phone", "coral", "mcu")
QUANTS = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("int8", "uint8", "float32")


class TargetCheckError(UserError):
    """A model breaks a target's limits (ops, op versions, flash, RAM, shapes)."""


@dataclasses.dataclass
class TargetProfile:
    target: str
    description: str
    runtime: str
    quants: list
    default_quant: str
    io_type: str = "int8"
    # int8 models' output type when it differs from io_type (phone: float32 probabilities).
    output_type: Optional[str] = None
    # App-ready file: pixels in, softmax probabilities out, TFLite metadata with
    # the labels, so that MediaPipe Tasks' ImageClassifier loads it as it is.
    app_ready: bool = False
    # For app-ready exports of grayscale models: take RGB and convert to luminance inside.
    rgb_input: bool = False
    flash_bytes: Optional[int] = None
    ram_bytes: Optional[int] = None
    max_dims_gt1: Optional[int] = None
    max_op_versions: dict = dataclasses.field(default_factory=dict)
    allowed_ops: Optional[list] = None
    source: str = ""


def profile_dir():
    """Where the shipped profiles live.

    ``$TFIGKD_PROFILES`` if set; else the repository's top-level ``tflite/``
    (a source checkout); else the copies packaged in ``tfigkd/export/profiles``
    (an installed wheel).
    """
    env = os.environ.get("TFIGKD_PROFILES")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.join(os.path.dirname(os.path.dirname(here)), "tflite")
    return repo if os.path.isdir(repo) else os.path.join(here, "profiles")


def load_profile(target_or_path):
    """Loads a profile by target name (phone, coral, mcu) or from a YAML path."""
    path = target_or_path
    if target_or_path in TARGETS:
        path = os.path.join(profile_dir(), f"{target_or_path}.yaml")
    elif not str(target_or_path).endswith((".yaml", ".yml")):
        raise UserError(f"Unknown target {target_or_path!r}: use one of {', '.join(TARGETS)} "
                        "or a profile .yaml path.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"Target profile {path} not found (set TFIGKD_PROFILES to the "
                                "folder holding phone.yaml, coral.yaml and mcu.yaml).")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    names = {f.name for f in dataclasses.fields(TargetProfile)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{path}: unknown keys {unknown}; allowed: {sorted(names - {'source'})}.")
    prof = TargetProfile(**data, source=os.path.abspath(path))
    bad = [q for q in prof.quants if q not in QUANTS]
    if (bad or prof.default_quant not in prof.quants or prof.io_type not in IO_TYPES
            or prof.output_type not in (None, *IO_TYPES)):
        raise UserError(f"{path}: quants must be from {QUANTS} and include default_quant; "
                        f"io_type and output_type one of {IO_TYPES}.")
    return prof


def resolve_quant(profile, quant):
    """The quantisation to use: ``quant`` if the target allows it, else its default."""
    quant = quant or profile.default_quant
    if quant not in profile.quants:
        raise TargetCheckError(
            f"Target {profile.target!r} does not take {quant!r} models; it takes "
            f"{', '.join(profile.quants)} (e.g. --quant {profile.default_quant}).")
    return quant


def check_static(profile, ops, io, model_bytes):
    """Checks ops, op versions, tensor ranks and flash size against a profile.

    Args:
        profile: ``TargetProfile``.
        ops: ``model_ops(...)`` result.
        io: ``io_details(...)`` result.
        model_bytes: Size in bytes of the ``.tflite``.

    Returns:
        A list of warnings (strings) for things that do not block.

    Raises:
        TargetCheckError: Naming every problem and what to do about it.
    """
    problems = []
    if profile.allowed_ops is not None:
        bad = [f"{o['name']} (x{o['count']})" for o in ops if o["name"] not in profile.allowed_ops]
        if bad:
            problems.append(
                f"ops not supported on {profile.target}: {', '.join(bad)}. Replace those layers "
                f"(supported: {', '.join(profile.allowed_ops)}) or pick another target.")
    for o in ops:
        limit = profile.max_op_versions.get(o["name"])
        if limit is not None and o["version"] > limit:
            problems.append(
                f"{o['name']} is version {o['version']}, but {profile.runtime} accepts at most "
                f"version {limit}: newer TFLite converters emit op versions that the last "
                "edgetpu_compiler (16.0) rejects. Convert with an older TensorFlow (2.15 or "
                "earlier) for this target, or run the ops on the CPU.")
    if profile.max_dims_gt1:
        for t in io["inputs"] + io["outputs"]:
            if sum(d > 1 for d in t["shape"]) > profile.max_dims_gt1:
                problems.append(f"tensor {t['name']} has shape {t['shape']}: {profile.target} "
                                f"allows at most {profile.max_dims_gt1} dimensions larger than 1.")
    if profile.flash_bytes is not None and model_bytes > profile.flash_bytes:
        problems.append(
            f"the model is {model_bytes:,} bytes but the {profile.target} profile allows "
            f"{profile.flash_bytes:,} bytes of flash: use a smaller student (more blocks "
            "removed), prune it, or a profile for a bigger board.")
    if problems:
        raise TargetCheckError(f"Model does not fit target {profile.target!r} "
                               f"({profile.source}):\n- " + "\n- ".join(problems))
    warnings = []
    if profile.ram_bytes is not None and profile.target == "coral" and model_bytes > profile.ram_bytes:
        warnings.append(f"{model_bytes:,} bytes exceed the Edge TPU's {profile.ram_bytes:,}-byte "
                        "parameter cache: weights will stream from the host each inference.")
    return warnings


def check_ram(profile, arena_bytes):
    """Raises ``TargetCheckError`` when the tensor arena exceeds the profile's RAM."""
    if profile.ram_bytes is not None and arena_bytes > profile.ram_bytes:
        raise TargetCheckError(
            f"The model needs a {arena_bytes:,}-byte tensor arena but the {profile.target} "
            f"profile ({profile.source}) allows {profile.ram_bytes:,} bytes of RAM: use a "
            "smaller input or student, or a profile for a bigger board.")
