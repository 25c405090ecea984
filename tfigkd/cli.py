"""The ``tfigkd`` command line. Thin: parse, load the config, call the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tfigkd.errors import UserError
from tfigkd.export.targets import QUANTS, TARGETS
from tfigkd.models.teacher_io import NORMS
from tfigkd.modes import STORED_SOURCES


def _quiet_tf(verbose):
    # TensorFlow's C++ start-up chatter (oneDNN notices, "failed call to
    # cuInit" on CPU machines) drowns the useful output; --verbose or
    # TF_CPP_MIN_LOG_LEVEL=0 brings it back.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")


def _import_tf_quietly():
    """Imports TensorFlow with the process's stderr parked, then restores it.

    TensorFlow 2.21 logs through absl before its log level applies, so
    TF_CPP_MIN_LOG_LEVEL alone does not stop the oneDNN notices and the
    "failed call to cuInit" error on machines without a GPU. The parked
    output is shown if the import fails.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device probing (cuInit) logs here
        except BaseException:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _setup_logging(verbose):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s")
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)



from tfigkd.cli_commands import (  # noqa: E402
    cmd_ablate, cmd_bench, cmd_check_config, cmd_check_phone, cmd_compress, cmd_distill,
    cmd_export, cmd_precompute_ig, cmd_run, cmd_students, cmd_summary, cmd_sweep,
    cmd_train_teacher, cmd_tune)


def _add_config(p):
    p.add_argument("--config", required=True, help="experiment YAML under configs/")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set teacher.train.epochs=2")


def _unit_options(p, config_help, out_help):
    """The options ``ablate`` and ``sweep`` share: both run (mode, seed) units in a folder."""
    p.add_argument("config_path", metavar="CONFIG", help=config_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: student.seeds)")
    p.add_argument("--modes", nargs="+", help="modes (default: student.modes)")
    p.add_argument("--shard", metavar="i/N", help="run only every N-th unit from i (workers)")
    p.add_argument("--report", action="store_true", help="train nothing; report finished units")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfigkd",
        description="Knowledge distillation guided by Integrated Gradients: "
                    "train, attribute, distill and export to TFLite.")
    from tfigkd import __version__

    parser.add_argument("--version", action="version", version=f"tfigkd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging and TensorFlow's own start-up messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train-teacher", help="train the MobileNetV2 teacher of a config")
    _add_config(p)
    p.add_argument("--out", required=True, help="output folder (resumes if it holds a run)")
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("run", help="the whole pipeline: teacher, IG maps, students, int8 export, report")
    p.add_argument("config_path", metavar="CONFIG", help="experiment YAML")
    p.add_argument("--out", required=True, help="output folder (re-run to resume)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ablate", help="modes x paired seeds (x Monte Carlo subsets) with "
                                      "paired statistics and teacher-student IG agreement")
    _unit_options(p, "experiment YAML", "ablation folder (re-run to resume)")
    p.add_argument("--subsets", type=int, help="Monte Carlo subsets (default: ablation.subsets)")
    p.add_argument("--subset-fraction", type=float, help="fraction of the training split per subset")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("tune", help="hyperparameter search on the validation split (Optuna); "
                                     "writes best.yaml for tfigkd run")
    p.add_argument("config_path", metavar="CONFIG", help="experiment YAML with a tune: section")
    p.add_argument("--out", required=True, help="tuning folder (re-run to resume)")
    p.add_argument("--trials", type=int, help="trials in total over all workers (default tune.trials)")
    p.add_argument("--storage", help="Optuna storage URL shared by workers (default "
                                     "sqlite:///OUT/study.db; journal:PATH for a journal file)")
    p.add_argument("--study", help="study name (default tune.study, else the config's name)")
    p.add_argument("--sampler", choices=("tpe", "grid", "random"), help="default tune.sampler")
    p.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("sweep", help="the ablation over several students (truncation depths, "
                                     "compact designs): accuracy vs params/MACs/int8 latency")
    _unit_options(p, "experiment YAML with a sweep: section", "sweep folder (re-run to resume)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("precompute-ig", help="compute the teacher's IG maps into a TFRecord store")
    _add_config(p)
    p.add_argument("--out", required=True, help="run folder holding teacher.keras; maps go to OUT/ig")
    p.add_argument("--shard", metavar="i/N", help="compute only part i of N (job arrays)")
    p.add_argument("--verify", action="store_true",
                   help="compute nothing: check that the shards make a whole and write the manifest")
    p.add_argument("--source", default="ig",
                   choices=STORED_SOURCES,
                   help="which maps: the true class's IG (default, OUT/ig) or an overlay control "
                        "stored under OUT/attributions/SOURCE")
    p.set_defaults(func=cmd_precompute_ig)

    p = sub.add_parser("export", help="convert a .keras model to a checked .tflite for a target")
    _add_config(p)
    p.add_argument("--model", required=True, help="the .keras model (teacher or student)")
    p.add_argument("--target", choices=TARGETS, default="phone",
                   help="deployment target; its limits are in tflite/<target>.yaml")
    p.add_argument("--quant", choices=QUANTS,
                   help="quantisation (default: the target's default)")
    p.add_argument("--profile", help="a custom target profile .yaml (overrides --target)")
    p.add_argument("--out", help="output folder (default: export/ beside the model)")
    p.add_argument("--input-norm", choices=NORMS,
                   help="override the model's input normalisation (normally read from its metrics)")
    p.add_argument("--check-images", type=int, help="test images for the LiteRT check (default all)")
    p.add_argument("--micro-images", type=int, default=300,
                   help="test images run through TFLite Micro for the mcu target")
    p.add_argument("--gray-input", action="store_true",
                   help="phone: keep a grayscale model's 1-channel input (default: it takes RGB "
                        "and converts to luminance inside; MediaPipe needs RGB)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check-phone", help="run an exported .tflite in LiteRT and MediaPipe's "
                                          "ImageClassifier on the test split, as an app would")
    _add_config(p)
    p.add_argument("tflite", help="the exported .tflite")
    p.add_argument("--check-images", type=int, help="test images to classify (default all)")
    p.set_defaults(func=cmd_check_phone)

    p = sub.add_parser("bench", help="LiteRT latency of teacher and students in each quantisation")
    _add_config(p)
    p.add_argument("--teacher", help="the teacher .keras (speed-ups are relative to it)")
    p.add_argument("--student", action="append", help="a student .keras (repeatable)")
    p.add_argument("--quants", nargs="+", default=list(QUANTS), choices=QUANTS)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                   help="interpreter threads; 0 = all cores")
    p.add_argument("--runs", type=int, default=100, help="timed invokes per case (>= 100)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--check-images", type=int, help="test images for the accuracy check (default all)")
    p.add_argument("--out", required=True, help="output folder for bench.json, bench.md, latency.png")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("compress", help="QAT or pruning (TFMOT) with KD fine-tuning, vs PTQ int8")
    _add_config(p)
    p.add_argument("--model", required=True, help="the student .keras")
    p.add_argument("--teacher", required=True, help="the teacher .keras (KD targets)")
    p.add_argument("--method", choices=("qat", "prune"), default="qat")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--sparsity", type=float, default=0.5, help="final sparsity for --method prune")
    p.add_argument("--check-images", type=int, help="test images for the accuracy check (default all)")
    p.add_argument("--out", help="output folder (default: compress/ beside the model)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("summary", help="parameters, compression factor and MACs of models")
    p.add_argument("--input-shape", type=int, nargs=3, default=[32, 32, 3], metavar=("H", "W", "C"))
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--blocks-removed", type=int, nargs="*", default=[3, 5, 7, 9, 11, 13, 15, 17])
    p.add_argument("--model", help="a registered model name instead of the students")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("students", help="measured cost of every student design vs the teacher "
                                        "(params, MACs, int8 size, TFLM arena, LiteRT latency)")
    p.add_argument("--input-shape", type=int, nargs=3, default=[28, 28, 1], metavar=("H", "W", "C"))
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--designs", nargs="+", metavar="NAME",
                   help="presets or registered models (default: every preset)")
    p.add_argument("--target", help="keep designs that fit this target: mcu, coral, phone or a "
                                    "profile .yaml (flash, RAM, ops)")
    p.add_argument("--max-macs", type=float, help="keep designs with at most this many MACs")
    p.add_argument("--max-latency-ms", type=float,
                   help="keep designs whose int8 median latency (batch 1, 1 thread) is at most this")
    p.add_argument("--runs", type=int, default=300, help="timed invokes per file")
    p.add_argument("--no-micro", action="store_true", help="skip the TFLite Micro arena")
    p.add_argument("--out", help="folder for students.json, students.md and the .tflite files")
    p.set_defaults(func=cmd_students)

    p = sub.add_parser(
        "distill", help="compress your own model in one command: teacher .keras + images -> "
                        "a student chosen for a target, exported, checked and reported",
        description="Distils a trained Keras teacher into a student measured and chosen for "
                    "the target (the design with the most MACs that fits the target and the "
                    "budget), trains it with the project's best recipe (tfigkd/recipes.py), "
                    "exports it with every check, and writes DIR/report.md + report.html. "
                    "DIR/config.yaml reproduces it: tfigkd run DIR/config.yaml --out DIR.")
    p.add_argument("teacher", metavar="TEACHER.keras", help="the trained teacher (its input "
                   "size and classes are read from it)")
    p.add_argument("data", metavar="DATA", help="image folder (DATA/<class>/*, or DATA/train "
                   "and DATA/test) or an .npz with x_train, y_train, x_test, y_test")
    p.add_argument("--target", default="phone", metavar="phone|coral|mcu|PROFILE.yaml",
                   help="deployment target or a target profile .yaml (default phone)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-latency-ms", type=float, metavar="X",
                        help="student int8 latency budget (LiteRT, batch 1, 1 thread, here)")
    budget.add_argument("--design", metavar="NAME",
                        help="train this design (a preset of tfigkd students) instead of choosing")
    p.add_argument("--max-size-kb", type=float, metavar="N", help="student int8 file budget")
    p.add_argument("--epochs", type=int, help="student epochs (default: the recipe's)")
    p.add_argument("--out", default="distill_out", metavar="DIR",
                   help="run folder (re-run the same command to resume; default distill_out)")
    # Checked (with the list of options) by tfigkd.experiments.distill: argparse choices
    # here would import Keras for every `tfigkd --help`.
    p.add_argument("--teacher-norm", metavar="NORM",
                   help="the teacher's input normalisation, when its graph has no Rescaling/"
                        "Normalization layer (raw: 0-255, unit: /255, minus_one_one, imagenet, "
                        "dataset)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="student resolution (default: the teacher's input size)")
    p.add_argument("--unlabeled", metavar="DIR", help="unlabelled images (a folder, or an .npz with x): they get only the KD term")
    p.add_argument("--latency-runs", type=int, default=300,
                   help="timed LiteRT invokes per design when measuring (default 300)")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    _add_config(p)
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv=None):
    """Entry point of the ``tfigkd`` console script.

    Returns:
        0 on success, 2 for a problem the user can fix (printed as one line
        naming it and the fix), 130 when interrupted. Bugs keep their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_tf(args.verbose)
    _setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not args.verbose and os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "0" \
            and "tensorflow" not in sys.modules:
        _import_tf_quietly()
    try:
        args.func(args)
    except (UserError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        if os.environ.get("TFIGKD_DEBUG"):
            raise
        # One line (a config with several problems lists them, one per line).
        msg = str(e) if isinstance(e, UserError) else " ".join(str(e).split())
        print(f"tfigkd: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfigkd: interrupted; finished work is kept: run the same command again to "
              "resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
