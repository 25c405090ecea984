"""``tfigkd distill``: a trained teacher and a folder of images -> a checked student for a target.

No config file: the teacher file says its input size and classes, its graph
(or the ``teacher_metrics.json`` tfigkd writes beside its own teachers) says
its input normalisation, the student design is measured on the target and
chosen by a stated rule (``tfigkd.bench.choice``), and the training recipe is
``tfigkd.recipes.best_recipe``. All of it becomes an ordinary
``ExperimentConfig``, written to ``DIR/config.yaml`` and run by the same
``tfigkd run`` pipeline, so ``tfigkd run DIR/config.yaml --out DIR``
reproduces the run (and resumes it), and a user can graduate to configs.
"""

from __future__ import annotations

import logging
import os

import yaml

from tfigkd.errors import UserError
from tfigkd.io import read_json, write_json, write_text
from tfigkd.layout import CONFIG_YAML, DESIGN_CHOICE, DESIGNS_DIR, TEACHER_METRICS
from tfigkd.lock import folder_lock

log = logging.getLogger(__name__)


def _data_section(data):
    """``data.source`` and ``data.path`` of an image folder or an ``.npz``."""
    path = os.path.abspath(os.path.expanduser(str(data)))
    if os.path.isdir(path):
        return {"source": "image_folder", "path": path}
    if os.path.isfile(path) and path.endswith(".npz"):
        return {"source": "numpy", "path": path}
    raise UserError(f"DATA {data} is neither a folder of class sub-folders nor an .npz file "
                    "(x_train, y_train, x_test, y_test); give one of those.")


def teacher_norm_for(model, teacher_path, given=None):
    """The teacher's input normalisation, and where it came from.

    Order: ``given`` (``--teacher-norm``); the model's own preprocessing layer
    (``teacher_io.detect_input_norm``); the ``teacher_metrics.json`` beside a
    teacher tfigkd trained (its ``input_norm``, and for "dataset" its mean and
    std). Otherwise a one-line error listing the options.

    Returns:
        ``(norm, reason, stats)``; ``stats`` is ``{"mean", "std"}`` for a
        recorded "dataset" normalisation, else None.
    """
    from tfigkd.models.teacher_io import NORMS, detect_input_norm

    if given:
        if given not in NORMS:
            raise UserError(f"--teacher-norm {given!r} is not one of {', '.join(NORMS)}.")
        return given, "--teacher-norm", None
    norm, why = detect_input_norm(model)
    if norm:
        return norm, why, None
    sidecar = os.path.join(os.path.dirname(teacher_path), TEACHER_METRICS)
    if os.path.exists(sidecar):
        meta = read_json(sidecar)
        norm = meta.get("input_norm")
        if norm in NORMS:
            stats = ({"mean": meta["mean"], "std": meta["std"]}
                     if norm == "dataset" and meta.get("mean") else None)
            return norm, f"{sidecar} (the teacher tfigkd trained)", stats
    raise UserError(
        f"Cannot tell which input normalisation the teacher {teacher_path} expects (no "
        "Rescaling/Normalization layer at its input); pass --teacher-norm, one of: "
        + ", ".join(NORMS) + " (raw = pixels 0-255, unit = /255, minus_one_one = /127.5 - 1, "
        "imagenet = ImageNet mean/std, dataset = this data's mean/std).")


def _check_class_order(teacher_path, class_names):
    """Refuses data whose classes are the teacher's recorded ones in another order."""
    sidecar = os.path.join(os.path.dirname(teacher_path), TEACHER_METRICS)
    if not os.path.exists(sidecar):
        return
    recorded = list(read_json(sidecar).get("class_names") or [])
    if sorted(recorded) == sorted(class_names) and recorded != list(class_names):
        raise UserError(f"The data's classes ({', '.join(class_names)}) are the teacher's in "
                        f"another order ({', '.join(recorded)}); classes are numbered in sorted "
                        "folder-name order, so rename the folders to sort in the teacher's order "
                        "(e.g. 0_cat, 1_dog).")


def prepare(teacher, data, out_dir, target="phone", max_latency_ms=None, max_size_kb=None,
            design=None, epochs=None, teacher_norm=None, image_size=None, designs=None,
            latency_runs=300, unlabeled=None):
    """Builds the run's config and chooses its student; writes ``config.yaml`` and the choice.

    Returns:
        ``(cfg, choice)``: the ``ExperimentConfig`` and the choice record
        (also in ``DIR/design_choice.json``).
    """
    from tfigkd.bench.choice import RULE, choose_design, judge, measured_designs
    from tfigkd.config import config_from_dict, config_to_dict
    from tfigkd.data import load_splits
    from tfigkd.export.targets import load_profile
    from tfigkd.models import check_fits_data, load_model_file, resolve_design
    from tfigkd.models.teacher_io import teacher_size
    from tfigkd.recipes import best_recipe

    if design and (max_latency_ms is not None or max_size_kb is not None):
        raise UserError("--design names the student, so a budget (--max-latency-ms / "
                        "--max-size-kb) has nothing to choose; give one or the other.")
    for flag, v in (("--max-latency-ms", max_latency_ms), ("--max-size-kb", max_size_kb),
                    ("--epochs", epochs)):
        if v is not None and v <= 0:
            raise UserError(f"{flag} must be positive, got {v}.")
    if design:
        resolve_design(design, "--design")
    profile = load_profile(target)
    data_cfg = _data_section(data)
    teacher_path = os.path.abspath(os.path.expanduser(str(teacher)))
    model = load_model_file(teacher_path, "teacher")
    size = teacher_size(model)
    if image_size:
        size = tuple(int(v) for v in image_size)
    if size is None:
        raise UserError(f"The teacher {teacher_path} takes images of any size; give the "
                        "student's resolution with --image-size H W.")
    channels = int(model.input_shape[-1])
    if channels not in (1, 3):
        raise UserError(f"The teacher takes {channels}-channel images; distill handles "
                        "grayscale (1) or RGB (3) teachers.")
    norm, norm_why, stats = teacher_norm_for(model, teacher_path, teacher_norm)
    log.info("Teacher %s: %dx%dx%d, %d classes, input normalisation %r (from %s).",
             teacher_path, *size, channels, model.output_shape[-1], norm, norm_why)
    data_cfg.update(image_size=list(size), color="rgb" if channels == 3 else "grayscale")
    if unlabeled is not None:
        # Unlabelled images get only the KD term (tfigkd/data/unlabeled.py).
        data_cfg["unlabeled"] = os.path.abspath(os.path.expanduser(str(unlabeled)))
    if stats:
        data_cfg.update(mean=list(stats["mean"]), std=list(stats["std"]))
    splits = load_splits(config_from_dict({"data": data_cfg}, "<distill>").data)
    _check_class_order(teacher_path, splits.class_names)
    # The teacher sees the student's images resized to its own size when they differ.
    own = teacher_size(model)
    teacher_input = list(own) if own and tuple(own) != tuple(size) else None
    check_fits_data(model, splits, f"Teacher {teacher_path}", teacher_input)

    rows = measured_designs(os.path.join(out_dir, DESIGNS_DIR), (*size, channels),
                            splits.num_classes, profile, teacher_path,
                            designs=[design] if design else designs, runs=latency_runs)
    if design:
        judge(rows)
        chosen = next(r for r in rows[1:] if r["name"] == design)
    else:
        chosen = choose_design(rows, max_latency_ms, max_size_kb, target=profile.target)
    choice = {"rule": RULE if not design else f"--design {design} (no choice made)",
              "chosen": chosen["name"], "forced": bool(design), "target": profile.target,
              "profile": profile.source,
              "budget": {"max_latency_ms": max_latency_ms, "max_size_kb": max_size_kb},
              "teacher_norm": {"norm": norm, "from": norm_why},
              "rows": [{k: r.get(k) for k in ("name", "model", "kwargs", "params", "macs",
                                               "int8_bytes", "arena_bytes", "fp32_ms", "int8_ms",
                                               "speedup_int8", "fits", "why", "eligible",
                                               "excluded")} for r in rows]}
    builder, kwargs = resolve_design(chosen["name"])
    student = best_recipe(len(splits.train), epochs)
    student["model"] = {"name": builder, "kwargs": dict(kwargs)}
    stem = os.path.splitext(os.path.basename(teacher_path))[0]
    cfg = config_from_dict({
        "name": f"distill_{stem}",
        "description": f"tfigkd distill of {teacher_path} on {data_cfg['path']} for "
                       f"{profile.target}: student {chosen['name']}",
        "data": data_cfg,
        "teacher": {"path": teacher_path, "input_size": teacher_input,
                    "train": {"input_norm": norm}},
        "student": student,
        "export": {"int8": True, "targets": [target if target in ("phone", "coral", "mcu")
                                             else profile.source],
                   "latency": True},
    }, "<distill>")
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, DESIGN_CHOICE), choice)
    header = ("# Written by tfigkd distill. Reproduce or resume with:\n"
              f"#   tfigkd run {os.path.join(out_dir, CONFIG_YAML)} --out {out_dir}\n")
    write_text(os.path.join(out_dir, CONFIG_YAML),
               header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    log.info("Student: %s (%s); config written to %s", chosen["name"], choice["rule"],
             os.path.join(out_dir, CONFIG_YAML))
    return cfg, choice


def distill(teacher, data, target="phone", out_dir="distill_out", max_latency_ms=None,
            max_size_kb=None, design=None, epochs=None, teacher_norm=None, unlabeled=None,
            image_size=None, designs=None, latency_runs=300, verbose=1):
    """Distils a trained teacher into a student chosen for a target, exports and reports it.

    Args:
        teacher: The teacher ``.keras`` (its input size, classes and, where
            its graph says it, input normalisation are read from it).
        data: An image folder (``root/<class>/*`` or ``root/train|test/<class>``)
            or an ``.npz`` (``x_train, y_train, x_test, y_test``).
        target: "phone", "coral", "mcu" or a target profile ``.yaml``.
        out_dir: The run folder (re-run to resume).
        max_latency_ms: Student int8 latency budget (LiteRT, batch 1, 1 thread).
        max_size_kb: Student int8 file budget in KB.
        design: Train this design (a preset or registered model) instead of choosing.
        epochs: Student epochs (default: ``best_recipe``'s).
        teacher_norm: The teacher's input normalisation when its graph does not say.
        unlabeled: Unlabelled images (a folder, or an ``.npz`` with ``x``): they
            get only the distillation term (``data.unlabeled``).
        image_size: (H, W) of the student (default: the teacher's input size).
        designs: Designs to choose among (default: every preset).
        latency_runs: Timed LiteRT invokes per design.
        verbose: Keras progress output (0, 1, 2).

    Returns:
        The ``tfigkd run`` summary, with ``design_choice`` added.

    Raises:
        tfigkd.UserError: A missing input, an unknown normalisation, or a
            budget no design meets (naming the fastest design).
    """
    from tfigkd.experiments.pipeline import run_pipeline

    out_dir = os.path.abspath(os.path.expanduser(str(out_dir)))
    with folder_lock(out_dir):
        cfg, choice = prepare(teacher, data, out_dir, target=target,
                              max_latency_ms=max_latency_ms, max_size_kb=max_size_kb,
                              design=design, epochs=epochs, teacher_norm=teacher_norm,
                              image_size=image_size, designs=designs, latency_runs=latency_runs,
                              unlabeled=unlabeled)
        summary = run_pipeline(cfg, out_dir, verbose=verbose)
    summary["design_choice"] = choice
    return summary
