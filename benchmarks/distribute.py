"""One device vs 2 replicas (MirroredStrategy over 2 logical CPU devices) on the tiny run.

Runs ``tfigkd run`` (teacher, IG maps, a plain and a ``kd_ig`` student) of the
test suite's tiny recipe in fresh processes, alternately with
``train.distribute: none`` and ``mirrored`` (``TFIGKD_CPU_DEVICES=2``), and
reports for each stage the steady epoch time (the median over epochs after
the first, which holds tracing), the images/s it gives, the IG stage's time
and every epoch's training loss. The first round is a warm-up (disk caches)
and is not reported.

    python benchmarks/distribute.py [--repeats 3]

On a CPU the two logical devices share the same cores, so this measures the
overhead of the strategy (splitting, all-reduce, synchronized BatchNorm),
not a speed-up; docs/scaling.md turns it into estimates for GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import numpy as np  # noqa: E402
from common import write_result  # noqa: E402

STAGES = {"teacher": "teacher_metrics.json", "student": "students/student-s0/metrics.json",
          "kd_ig": "students/kd_ig-s0/metrics.json"}
STATES = {"teacher": "work/teacher/state.json", "student": "students/student-s0/work/state.json",
          "kd_ig": "students/kd_ig-s0/work/state.json"}


def one_run(yaml_path, out, mirrored):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    args = [sys.executable, "-m", "tfigkd.cli", "run", yaml_path, "--out", out]
    if mirrored:
        env["TFIGKD_CPU_DEVICES"] = "2"
        args += ["--set", "teacher.train.distribute=mirrored",
                 "--set", "student.train.distribute=mirrored"]
    t = time.perf_counter()
    r = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    ig = re.search(r"Computed \d+ ig shard\(s\) in ([\d.]+) s", r.stderr)
    out_stats = {"process_seconds": wall, "ig_seconds": float(ig.group(1)) if ig else None}
    for stage in STAGES:
        with open(os.path.join(out, STATES[stage])) as f:
            epochs = json.load(f)["epoch_seconds"]
        with open(os.path.join(out, STAGES[stage])) as f:
            hist = json.load(f)["history"]
        out_stats[stage] = {"steady_epoch_seconds": float(np.median(epochs[1:])),
                            "first_epoch_seconds": epochs[0], "loss": hist["loss"],
                            "val_loss": hist["val_loss"]}
    return out_stats


def summarise(runs, n_train):
    s = {"process_seconds": _spread([r["process_seconds"] for r in runs]),
         "ig_seconds": _spread([r["ig_seconds"] for r in runs])}
    for stage in STAGES:
        sec = [r[stage]["steady_epoch_seconds"] for r in runs]
        s[stage] = {"steady_epoch_seconds": _spread(sec),
                    "images_per_s": _spread([n_train / x for x in sec]),
                    "first_epoch_seconds": _spread([r[stage]["first_epoch_seconds"] for r in runs]),
                    "loss": runs[0][stage]["loss"], "val_loss": runs[0][stage]["val_loss"]}
    return s


def _spread(values):
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "repeats": int(len(v))}


def main():
    from helpers import tiny_run_config, write_config
    from tfigkd.testing import write_npz

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                 "distribute_tiny.json"))
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="tfigkd-bench-distribute-")
    npz = write_npz(os.path.join(work, "toy.npz"), n_train=160, n_test=60)
    cfg = tiny_run_config(npz)
    cfg["teacher"]["model"]["kwargs"]["dropout"] = 0.0  # as tests/test_distribute.py
    yaml_path = write_config(os.path.join(work, "tiny.yaml"), cfg)
    runs = {"none": [], "mirrored_2_logical_cpus": []}
    for rep in range(args.repeats + 1):  # round 0: warm-up
        for kind in runs:
            r = one_run(yaml_path, os.path.join(work, f"{kind}-{rep}"), kind != "none")
            if rep:
                runs[kind].append(r)
            print(kind, rep, f"{r['process_seconds']:.1f} s", flush=True)
    n_train = 120  # 160 images, val_fraction 0.25
    result = {"command": "python benchmarks/distribute.py --repeats %d" % args.repeats,
              "what": "tfigkd run of the tiny test recipe (12x12x1, 120 training images, "
                      "batch 16, teacher 3 epochs, student and kd_ig 2 epochs)",
              "machine": _machine(), "n_train": n_train,
              **{kind: summarise(r, n_train) for kind, r in runs.items()}}
    write_result(args.out, result)


def _machine():
    from tfigkd.experiments.common import machine_info

    return machine_info()


if __name__ == "__main__":
    main()
