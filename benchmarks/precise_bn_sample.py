"""How many training images precise BatchNorm needs: validation accuracy vs sample size.

Precise BatchNorm (``tfigkd.models.batchnorm``) re-estimates every BatchNorm
layer's statistics on a fixed sample of training images before each
validation. Its forward passes are a fixed cost per epoch, proportional to
the sample size. This measures what a smaller sample costs in accuracy:
while the config's student (and teacher architecture) train, at the end of
every epoch the statistics are re-estimated from ``--draws`` independent
samples of each size in ``--sizes`` and from a ``--reference``-image
sample, and the validation accuracy of each is recorded. Reported per size:
the largest and the mean |accuracy - reference accuracy| over epochs and
draws (the error bound of that setting), and how often the best epoch by
validation differs from the reference's choice.

    python benchmarks/precise_bn_sample.py --config configs/main.yaml

Results: benchmarks/results/precise_bn_sample.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import write_result  # noqa: E402

from tfigkd.config import load_config  # noqa: E402
from tfigkd.data import load_splits  # noqa: E402
from tfigkd.experiments.common import (classification_compile, eval_datasets,  # noqa: E402
                                       evaluate_accuracy, machine_info, precise_bn_data,
                                       steps_per_epoch, training_data)
from tfigkd.experiments.optim import build_optimizer  # noqa: E402
from tfigkd.models import build_model  # noqa: E402
from tfigkd.models.batchnorm import BatchNormEstimator  # noqa: E402

log = logging.getLogger("precise_bn_sample")


class _Probe(keras.callbacks.Callback):
    """At each epoch's end: validation accuracy after re-estimation on each sample."""

    def __init__(self, net, samples, val_ds):
        super().__init__()
        self.net, self.samples, self.val_ds = net, samples, val_ds
        self.estimator = BatchNormEstimator(net)
        self.acc = {key: [] for key in samples}

    def on_epoch_end(self, epoch, logs=None):
        for key, data in self.samples.items():
            self.estimator(data)
            self.acc[key].append(evaluate_accuracy(self.net, self.val_ds))
        log.info("epoch %d: %s", epoch + 1, {k: round(v[-1], 4) for k, v in self.acc.items()})


def measure(name, net, train_cfg, splits, epochs, sizes, draws, reference):
    keras.utils.set_random_seed(train_cfg.seed)
    steps = steps_per_epoch(len(splits.train), train_cfg.batch_size)
    classification_compile(net, build_optimizer(train_cfg.optimizer, epochs, steps))
    val_ds, _ = eval_datasets(splits, train_cfg, batch_size=256)
    samples = {(reference, 0): precise_bn_data(
        splits, dataclasses.replace(train_cfg, precise_bn_images=reference), 10_000)}
    for n in sizes:
        for d in range(draws):
            samples[(n, d)] = precise_bn_data(
                splits, dataclasses.replace(train_cfg, precise_bn_images=n), d)
    probe = _Probe(net, samples, val_ds)
    net.fit(training_data(splits, train_cfg, train_cfg.seed)(0, epochs), epochs=epochs,
            steps_per_epoch=steps, callbacks=[probe], verbose=0)
    ref = np.array(probe.acc[(reference, 0)])
    rows = {}
    for n in sizes:
        accs = np.array([probe.acc[(n, d)] for d in range(draws)])  # (draws, epochs)
        diff = np.abs(accs - ref)
        rows[str(n)] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                        "best_epoch_differs": int(sum(int(np.argmax(a)) != int(np.argmax(ref))
                                                      for a in accs)),
                        "best_accuracy_diff_max": float(np.abs(accs.max(1) - ref.max()).max())}
        log.info("%s n=%d: |diff| max %.4f mean %.4f; best epoch differs in %d of %d draws",
                 name, n, rows[str(n)]["max_abs_diff"], rows[str(n)]["mean_abs_diff"],
                 rows[str(n)]["best_epoch_differs"], draws)
    return {"epochs": epochs, "batch_size": train_cfg.batch_size,
            "reference_accuracy": ref.tolist(), "sizes": rows,
            "accuracy": {f"{n}/{d}": v for (n, d), v in probe.acc.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/main.yaml")
    ap.add_argument("--epochs", type=int, default=8, help="student epochs")
    ap.add_argument("--teacher-epochs", type=int, default=4,
                    help="epochs of the teacher architecture (0: skip it)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--draws", type=int, default=3, help="independent samples per size")
    ap.add_argument("--reference", type=int, default=4096)
    ap.add_argument("--out", default="benchmarks/results/precise_bn_sample.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(args.config)
    splits = load_splits(cfg.data)
    result = {"machine": machine_info(), "config": args.config,
              "train_images": len(splits.train), "val_images": len(splits.val),
              "command": "python benchmarks/precise_bn_sample.py " + " ".join(
                  sys.argv[1:] if argv is None else argv), "models": {}}
    scfg = cfg.student
    keras.utils.set_random_seed(scfg.train.seed)
    student = build_model(scfg.model.name, splits.input_shape, splits.num_classes,
                          **scfg.model.kwargs)
    result["models"]["student"] = measure(
        f"student {scfg.model.name}", student, scfg.train, splits, args.epochs, args.sizes,
        args.draws, args.reference)
    if args.teacher_epochs:
        tcfg = dataclasses.replace(cfg.teacher.train, batch_size=128)
        keras.utils.set_random_seed(tcfg.seed)
        teacher = build_model(cfg.teacher.model.name, splits.input_shape, splits.num_classes,
                              **cfg.teacher.model.kwargs)
        result["models"]["teacher"] = measure(
            f"teacher {cfg.teacher.model.name}", teacher, tcfg, splits, args.teacher_epochs,
            args.sizes, args.draws, args.reference)
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
