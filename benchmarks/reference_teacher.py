"""Trains the shipped reference teacher for Fashion-MNIST and writes it to ``teachers/``.

``configs/reference_teacher.yaml``: ResNet-8 at twice MLPerf Tiny's width on the
full training set (54,000 train + 6,000 stratified validation), tested once on
all 10,000 test images. Training is ``tfigkd train-teacher``, so a killed run
resumes from its last finished epoch when the same command is run again.

Usage::

    .venv/bin/python benchmarks/reference_teacher.py [--out runs/reference_teacher]

Writes ``teachers/fashion_mnist_resnet8x2/teacher.keras`` (the best epoch on
validation), its ``teacher_metrics.json`` (accuracies, data fingerprint,
SHA-256, the config) and ``benchmarks/results/reference_teacher.json`` +
``reference_teacher.png`` (validation accuracy per epoch).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tfigkd.config import load_config  # noqa: E402
from tfigkd.io import file_sha256, write_json  # noqa: E402

log = logging.getLogger("reference_teacher")
CONFIG = os.path.join(ROOT, "configs", "reference_teacher.yaml")
SHIPPED = os.path.join(ROOT, "teachers", "fashion_mnist_resnet8x2")
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def plot_curve(history, test_accuracy, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["val_accuracy"]) + 1)
    ax.plot(epochs, history["val_accuracy"], marker="o", label="validation (6,000 images)")
    if "accuracy" in history:
        ax.plot(epochs, history["accuracy"], marker=".", label="training (augmented)")
    ax.axhline(test_accuracy, color="k", ls="--", label=f"test, best epoch: {test_accuracy:.4f}")
    ax.axhline(0.93, color="r", ls=":", label="goal 0.93")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.8, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/reference_teacher")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from tfigkd.experiments.teacher import train_teacher

    cfg = load_config(CONFIG, args.set)
    metrics = train_teacher(cfg, args.out, verbose=2)
    os.makedirs(SHIPPED, exist_ok=True)
    target = os.path.join(SHIPPED, "teacher.keras")
    shutil.copyfile(metrics["model_path"], target)
    shipped = {k: v for k, v in metrics.items() if k not in ("model_path", "wall_seconds_this_run")}
    shipped.update(model_path="teacher.keras", sha256=file_sha256(target),
                   bytes=os.path.getsize(target),
                   command="python benchmarks/reference_teacher.py " + " ".join(
                       sys.argv[1:] if argv is None else argv))
    write_json(os.path.join(SHIPPED, "teacher_metrics.json"), shipped)
    write_json(os.path.join(RESULTS, "reference_teacher.json"),
               {k: shipped[k] for k in ("model", "test_accuracy", "val_accuracy", "best_epoch",
                                        "epochs", "trainable_params", "macs", "train_seconds",
                                        "bytes", "sha256", "sizes", "history", "command")})
    plot_curve(metrics["history"], metrics["test_accuracy"],
               os.path.join(RESULTS, "reference_teacher.png"))
    log.info("Shipped %s (%d bytes): test accuracy %.4f (best epoch %s of %d).", target,
             shipped["bytes"], metrics["test_accuracy"], metrics["best_epoch"], metrics["epochs"])


if __name__ == "__main__":
    main()
