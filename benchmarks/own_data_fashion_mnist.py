"""Bring-your-own-data, end to end on real photos-like files: Fashion-MNIST as a messy image folder.

Writes a stratified subset of Fashion-MNIST (Debian's ``dataset-fashion-mnist``)
as a class-folder tree the way users' folders look: every image upscaled to a
random size between 28 and 72 px and a random aspect ratio, saved as JPEG or
PNG in grayscale, RGB or palette mode. Then runs
``examples/keras_applications_teacher.py`` on it: a Keras Applications
MobileNetV2 (alpha 0.35, random init: nothing can be downloaded here) trained
at 96x96 with ``[-1, 1]`` inputs as the adopted teacher, and a ResNet-8
student at 32x32 distilled from it in modes ``student`` and ``kd_ig`` (IG
maps at 96x96, resized to 32x32), with the images streamed from the disk
cache (``--memory-budget-mb``, default 1 MB, so every stage streams).

    python benchmarks/own_data_fashion_mnist.py --per-class 300 --out runs/own_data_fm

Writes ``benchmarks/results/own_data_fashion_mnist.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
from common import write_result  # noqa: E402

log = logging.getLogger("own_data_fashion_mnist")


def write_folder(root, per_class, seed=0):
    """``per_class`` training + ``per_class // 3`` test images per class, messy sizes and modes."""
    from PIL import Image

    from tfigkd.data.sources import FASHION_MNIST_CLASSES, load_fashion_mnist

    xtr, ytr, xte, yte, _ = load_fashion_mnist()
    rng = np.random.default_rng(seed)
    x = np.concatenate([xtr, xte])[..., 0]
    y = np.concatenate([ytr, yte])
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class + per_class // 3,
                                      replace=False) for c in range(10)])
    modes = ["L", "RGB", "P"]
    for n, i in enumerate(pick):
        c = FASHION_MNIST_CLASSES[int(y[i])].replace("/", "-").replace(" ", "_")
        os.makedirs(os.path.join(root, c), exist_ok=True)
        h = int(rng.integers(28, 73))
        w = int(np.clip(h * rng.uniform(0.75, 1.33), 28, 96))
        im = Image.fromarray(x[i]).resize((w, h), Image.BICUBIC).convert(modes[n % 3])
        if n % 2 and im.mode != "P":
            im.save(os.path.join(root, c, f"{i}.jpg"), quality=92)
        else:
            im.save(os.path.join(root, c, f"{i}.png"))
    return len(pick)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--out", default="runs/own_data_fm")
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--student-epochs", type=int, default=15)
    p.add_argument("--ig-steps", type=int, default=16)
    p.add_argument("--memory-budget-mb", type=float, default=1.0)
    p.add_argument("--result", default="benchmarks/results/own_data_fashion_mnist.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import keras_applications_teacher as example

    from tfigkd.bench.machine import machine_info

    folder = os.path.join(args.out, "images")
    if not os.path.isdir(folder):
        t = time.perf_counter()
        n = write_folder(folder, args.per_class)
        log.info("Wrote %d images to %s in %.1f s", n, folder, time.perf_counter() - t)
    t = time.perf_counter()
    summary = example.main(folder, args.out, teacher_epochs=args.teacher_epochs,
                           student_epochs=args.student_epochs, ig_steps=args.ig_steps,
                           data={"memory_budget_mb": args.memory_budget_mb,
                                 "cache_dir": os.path.join(args.out, "cache")}, verbose=0)
    wall = time.perf_counter() - t
    write_result(args.result, {
        "what": "Fashion-MNIST as a messy image folder (28-72 px, JPEG/PNG, L/RGB/P), streamed; "
                "Keras Applications MobileNetV2 teacher at 96x96 (minus_one_one), ResNet-8 "
                "student at 32x32",
        "command": " ".join(["python"] + sys.argv),
        "per_class": args.per_class, "images": sum(1 for _, _, f in os.walk(folder) for _ in f),
        "seconds": wall, "streamed": summary["streamed"], "summary": summary,
        "machine": machine_info(),
    })
    for m in summary["models"]:
        log.info("%s: test accuracy %.4f", m["name"], m["test_accuracy"])


if __name__ == "__main__":
    main()
