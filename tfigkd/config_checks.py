"""The checks of a parsed config that look beyond one key: paths that must exist, sizes,
modes, export targets (``tfigkd.config.config_from_dict`` runs them)."""

from __future__ import annotations

import os

from tfigkd.errors import UserError
from tfigkd.export.targets import TARGETS


def check_paths(cfg, errors):
    """Appends to ``errors`` every config value that names a missing file or an impossible
    combination (paths, sizes, modes, targets): the checks beyond each key's type and range."""
    d = cfg.data
    needs_path = {"cifar10_archive": "the official cifar-10-binary.tar.gz (or "
                  "cifar-10-python.tar.gz, or its extracted folder)",
                  "image_folder": "a folder with one sub-folder per class",
                  "numpy": "an .npz file with x_train, y_train, x_test, y_test"}
    if d.source in needs_path and not d.path:
        errors.append(f"data.path: required for source {d.source!r}; set it to "
                      f"{needs_path[d.source]}.")
    elif d.path and not os.path.exists(os.path.expanduser(d.path)):
        fix = ("install Debian's package dataset-fashion-mnist "
               "(apt-get install dataset-fashion-mnist), set data.path: null to "
               "search the usual places, or set data.download: true"
               if d.source == "fashion_mnist" else f"point it to {needs_path.get(d.source, 'the data')}")
        errors.append(f"data.path: {d.path!r} does not exist; {fix}.")
    if d.source == "cifar10_tfds" and d.data_dir and not d.download \
            and not os.path.isdir(os.path.expanduser(d.data_dir)):
        errors.append(f"data.data_dir: {d.data_dir!r} does not exist and "
                      "data.download is false; set download: true or fix the path.")
    if (d.mean is None) != (d.std is None):
        errors.append("data.mean / data.std: give both or neither.")
    if d.source == "tfds" and not d.name:
        errors.append("data.name: required for source 'tfds'; set it to a tensorflow-datasets "
                      "name, e.g. cifar10 or imagenette/160px.")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) < 1):
        errors.append(f"data.image_size: {d.image_size!r} must be [height, width] in pixels, "
                      "e.g. [32, 32].")
    if d.unlabeled and not os.path.exists(os.path.expanduser(d.unlabeled)):
        errors.append(f"data.unlabeled: {d.unlabeled!r} does not exist; point it to an .npz "
                      "with an array 'x' (uint8 NHWC) or to a folder of images.")
    size = cfg.teacher.input_size
    if size is not None and (len(size) != 2 or min(size) < 1):
        errors.append(f"teacher.input_size: {size!r} must be [height, width] in pixels, "
                      "e.g. [96, 96].")
    from tfigkd.modes import parse_mode

    for m in cfg.student.modes:
        try:
            parse_mode(m)
        except UserError as e:
            errors.append(f"student.modes: {e}")
    if cfg.ig.adaptive and cfg.ig.method == "nested_trapezoid":
        problem = nested_steps_problem(min(cfg.ig.start_steps, cfg.ig.n_steps), cfg.ig.n_steps)
        if problem:
            errors.append(f"ig.start_steps / ig.n_steps: {problem}")
    for t in cfg.export.targets:
        profile = t.endswith((".yaml", ".yml")) and os.path.isfile(os.path.expanduser(t))
        if t not in TARGETS and not profile:
            errors.append(f"export.targets: {t!r} is not a target; use {', '.join(TARGETS)} or "
                          "the path of a target profile .yaml that exists.")
    if cfg.teacher.path and not os.path.exists(os.path.expanduser(cfg.teacher.path)):
        errors.append(f"teacher.path: {cfg.teacher.path!r} does not exist; "
                      "remove it to train a teacher, or point it to a .keras file.")


def power_of_two(n):
    return n >= 1 and (n & (n - 1)) == 0


def nested_steps_problem(start_steps, max_steps):
    """What is wrong with these step counts for the nested IG rule, or None."""
    s, m = int(start_steps), int(max_steps)
    if power_of_two(s) and power_of_two(m) and s <= m:
        return None
    return (f"the nested IG rule halves panels, so ig.start_steps and ig.n_steps must be "
            f"powers of two with start_steps <= n_steps; got {start_steps} and {max_steps} "
            "(e.g. 8 and 128).")
