"""``tfigkd distill`` end to end on real images: Fashion-MNIST written as an image folder.

Writes ``--per-class`` training images per class (stratified, seeded, from
the 60,000 training images) and all 10,000 test images as PNG files in
``OUT/images/train/<class>/`` and ``OUT/images/test/<class>/``, then runs,
in a fresh process and timed,

    tfigkd distill TEACHER OUT/images --target TARGET [--epochs N] [--max-latency-ms X] --out OUT/run

and records the command, the wall time, the design chosen and the test
accuracies. The teacher is the shipped reference teacher
(configs/reference_teacher.yaml) or the main job's (configs/main.yaml).

    python benchmarks/distill_fashion_mnist.py --teacher runs/reference_teacher/teacher.keras \
        --per-class 600 --epochs 5 --out runs/distill_fm

Writes ``benchmarks/results/distill_fashion_mnist.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_result  # noqa: E402

log = logging.getLogger("distill_fashion_mnist")


def write_folder(root, per_class, seed=0):
    """``per_class`` training images per class and the whole test set, as PNG class folders."""
    from PIL import Image

    from tfigkd.data.sources import FASHION_MNIST_CLASSES, load_fashion_mnist

    xtr, ytr, xte, yte, _ = load_fashion_mnist()
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(np.flatnonzero(ytr == c), per_class, replace=False)
                           for c in range(10)])
    for split, x, y, rows in (("train", xtr, ytr, pick), ("test", xte, yte, range(len(yte)))):
        for i in rows:
            # Classes are numbered in sorted folder-name order: the index prefix keeps the
            # teacher's (Fashion-MNIST's) order.
            c = f"{int(y[i])}_" + FASHION_MNIST_CLASSES[int(y[i])].replace("/", "-").replace(" ", "_")
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
            Image.fromarray(x[i][..., 0]).save(os.path.join(root, split, c, f"{i}.png"))
    return len(pick), len(yte)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--per-class", type=int, default=600)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--target", default="phone")
    p.add_argument("--max-latency-ms", type=float)
    p.add_argument("--out", default="runs/distill_fm")
    p.add_argument("--result", default="benchmarks/results/distill_fashion_mnist.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from tfigkd.experiments.common import machine_info

    folder = os.path.join(args.out, "images")
    if not os.path.isdir(folder):
        t = time.perf_counter()
        n_train, n_test = write_folder(folder, args.per_class)
        log.info("Wrote %d train + %d test images to %s in %.1f s", n_train, n_test, folder,
                 time.perf_counter() - t)
    run = os.path.join(args.out, "run")
    cmd = ["tfigkd", "distill", args.teacher, folder, "--target", args.target,
           "--epochs", str(args.epochs), "--out", run]
    if args.max_latency_ms is not None:
        cmd += ["--max-latency-ms", str(args.max_latency_ms)]
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfigkd.cli", *cmd[1:]], check=True, cwd=ROOT)
    wall = time.perf_counter() - t
    summary = json.load(open(os.path.join(run, "summary.json")))
    choice = json.load(open(os.path.join(run, "design_choice.json")))
    ev = summary["evaluation"]
    write_result(args.result, {
        "what": "tfigkd distill of a Fashion-MNIST teacher on Fashion-MNIST written as PNG "
                "class folders (train subset + the full test set)",
        "command": " ".join(cmd), "benchmark_command": " ".join(["python"] + sys.argv),
        "wall_seconds": wall, "sizes": summary["sizes"], "design": choice["chosen"],
        "rule": choice["rule"], "budget": choice["budget"], "designs": choice["rows"],
        "teacher_test_accuracy": ev["teacher"]["accuracy"],
        "student_test_accuracy": ev["student"]["accuracy"],
        "student_int8_litert_accuracy": (summary.get("int8") or {}).get("test_accuracy"),
        "latency": (summary.get("deploy") or {}).get("latency"),
        "evaluation": ev, "machine": machine_info(),
    })
    log.info("design %s; teacher %.4f, student %.4f; %.0f s", choice["chosen"],
             ev["teacher"]["accuracy"], ev["student"]["accuracy"], wall)


if __name__ == "__main__":
    main()
