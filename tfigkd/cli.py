"""The ``tfigkd`` command line. Thin: parse, load the config, call the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tfigkd.errors import UserError
from tfigkd.export.targets import QUANTS, TARGETS
from tfigkd.layout import ABLATION_MD, STUDENTS_JSON, STUDENTS_MD, SWEEP_MD
from tfigkd.models.teacher_io import NORMS


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


def _load(args):
    from tfigkd.config import load_config

    return load_config(args.config, args.set)


def cmd_train_teacher(args):
    from tfigkd.experiments.teacher import train_teacher

    cfg = _load(args)
    metrics = train_teacher(cfg, args.out)
    print(f"test_accuracy={metrics['test_accuracy']:.4f} "
          f"val_accuracy={metrics['val_accuracy']:.4f}")


def cmd_precompute_ig(args):
    from tfigkd.experiments.attribution import precompute_ig
    from tfigkd.attribution.store import parse_shard_spec

    cfg = _load(args)
    shard = parse_shard_spec(args.shard) if args.shard else (0, 1)
    man = precompute_ig(cfg, args.out, shard=shard, verify_only=args.verify, source=args.source)
    if man is None:
        print(f"Shard {args.shard} done; other shards are still missing. When all jobs "
              f"have finished, run: tfigkd precompute-ig --config {args.config} "
              f"--out {args.out} --source {args.source} --verify")
        return
    c = man["completeness"]
    what = "IG" if args.source == "ig" else args.source
    print(f"{what} store OK: {man['count']} maps in {len(man['shards'])} shards; completeness "
          f"error median {c['median_rel_error']:.2%}, p90 {c['p90_rel_error']:.2%} (relative).")


def cmd_run(args):
    from tfigkd.config import load_config
    from tfigkd.experiments.pipeline import run_pipeline

    cfg = load_config(args.config_path, args.set)
    s = run_pipeline(cfg, args.out)
    print(f"teacher test_accuracy={s['teacher']['test_accuracy']:.4f}")
    for m in s["models"]:
        print(f"{m['mode']:<10} seed {m['seed']}: val {m['val_accuracy']:.4f} test {m['test_accuracy']:.4f}")
    if s["int8"]:
        print(f"int8 {s['int8']['path']}: test {s['int8']['test_accuracy']:.4f}")


def cmd_ablate(args):
    from tfigkd.attribution.store import parse_shard_spec
    from tfigkd.config import load_config
    from tfigkd.experiments.ablate import ablate

    cfg = load_config(args.config_path, args.set)
    if args.seeds is not None and args.seeds < 1:
        raise UserError("--seeds must be at least 1.")
    if args.subset_fraction is not None and not 0.05 <= args.subset_fraction <= 1.0:
        raise UserError("--subset-fraction must be in [0.05, 1].")
    report = ablate(cfg, args.out, seeds=None if args.seeds is None else range(args.seeds),
                    modes=args.modes, subsets=args.subsets, subset_fraction=args.subset_fraction,
                    shard=parse_shard_spec(args.shard) if args.shard else (0, 1),
                    report_only=args.report)
    print(f"{report['finished']} of {report['units']} units finished; "
          f"{os.path.join(args.out, ABLATION_MD)}")
    for note in report["notes"]:
        print(f"note: {note}")
    for c in report["comparisons"]:
        if c["metric"] == "test_accuracy":
            print(f"{c['a']:>12} - {c['b']:<8} n={c['n']:<3} diff {c['mean_diff']:+.4f} "
                  f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]  Holm p {c['holm_p']:.3g}")


def cmd_tune(args):
    from tfigkd.experiments.tune import tune

    if args.trials is not None and args.trials < 1:
        raise UserError("--trials must be at least 1.")
    s = tune(args.config_path, args.out, trials=args.trials, storage=args.storage,
             study_name=args.study, sampler=args.sampler, timeout_s=args.timeout,
             overrides=args.set)
    print(f"study {s['study']}: " + ", ".join(f"{n} {k}" for k, n in s["trials"].items() if n))
    if s["best"]:
        print(f"best trial {s['best']['trial']}: val_accuracy={s['best']['values'][0]:.4f} "
              + " ".join(f"{k}={v}" for k, v in s["best"]["params"].items()))
        print(f"{s['best_yaml']} (run it with: tfigkd run {s['best_yaml']} --out DIR)")


def cmd_sweep(args):
    from tfigkd.attribution.store import parse_shard_spec
    from tfigkd.config import load_config
    from tfigkd.experiments.sweep import sweep

    cfg = load_config(args.config_path, args.set)
    if args.seeds is not None and args.seeds < 1:
        raise UserError("--seeds must be at least 1.")
    report = sweep(cfg, args.out, seeds=None if args.seeds is None else range(args.seeds),
                   modes=args.modes, shard=parse_shard_spec(args.shard) if args.shard else (0, 1),
                   report_only=args.report)
    print(f"{len(report['designs'])} students x {len(report['modes'])} modes; "
          f"{os.path.join(args.out, SWEEP_MD)}")
    for note in report["notes"]:
        print(f"note: {note}")
    for r in report["rows"]:
        acc = "-" if r["mean"] is None else f"{r['mean']:.4f}"
        print(f"{r['design']:>22} {r['mode']:<12} n={r['n']:<3} test {acc}  params {r['params']:,}"
              f"  int8 {r['int8_ms']:.3f} ms")


def cmd_export(args):
    from tfigkd.data import load_splits
    from tfigkd.export.exporter import export_model, export_summary
    from tfigkd.export.targets import load_profile

    cfg = _load(args)
    prof = load_profile(args.profile or args.target)
    meta = export_model(args.model, prof.target, load_splits(cfg.data), quant=args.quant,
                        out_dir=args.out, input_norm=args.input_norm, cfg=cfg, profile=prof,
                        calibration_images=cfg.export.calibration_images,
                        check_images=args.check_images, micro_images=args.micro_images,
                        rgb_input=False if args.gray_input else None, verbose=False)
    print("\n".join(export_summary(meta)))


def cmd_check_phone(args):
    from tfigkd.data import load_splits
    from tfigkd.export.mediapipe_check import check_phone_file, describe

    if not os.path.isfile(args.tflite):
        raise UserError(f"{args.tflite} does not exist: give an exported .tflite file.")
    r = check_phone_file(args.tflite, load_splits(_load(args).data), args.check_images)
    print(f"{args.tflite}: input {r['input']['dtype']} {r['input']['shape']}, output "
          f"{r['output']['dtype']} {r['output']['shape']}; metadata "
          f"{', '.join(r['metadata']) or 'none'}; zipped files {', '.join(r['files']) or 'none'}")
    print(f"LiteRT accuracy {r['litert']['accuracy']:.4f} on {r['litert']['images']} test images")
    print(describe(r["mediapipe"]))
    if r["mediapipe"]["loads"] is False:
        raise UserError(f"MediaPipe cannot load {args.tflite}; re-export it with "
                        "tfigkd export --target phone.")


def cmd_bench(args):
    from tfigkd.bench.suite import run_bench
    from tfigkd.data import load_splits

    cfg = _load(args)
    entries = []
    if args.teacher:
        entries.append({"name": "teacher", "role": "teacher", "keras_path": args.teacher})
    for k, path in enumerate(args.student or []):
        name = os.path.basename(os.path.dirname(os.path.abspath(path))) or f"student{k}"
        entries.append({"name": name, "role": "student", "keras_path": path})
    if not entries:
        raise UserError("Give --teacher and/or --student .keras models to benchmark.")
    threads = [None if t == 0 else t for t in args.threads]
    run_bench(entries, load_splits(cfg.data), args.out, quants=args.quants, batches=args.batches,
              threads=threads, runs=args.runs, warmup=args.warmup,
              calibration_images=cfg.export.calibration_images, check_images=args.check_images,
              cfg=cfg)


def cmd_compress(args):
    from tfigkd.compress.finetune import compress_student
    from tfigkd.data import load_splits
    from tfigkd.export.inputs import model_input_norm

    cfg = _load(args)
    compress_student(
        args.model, args.teacher, load_splits(cfg.data), method=args.method, out_dir=args.out,
        epochs=args.epochs, lr=args.lr, batch_size=cfg.student.train.batch_size,
        alpha=cfg.student.alpha, temperature=cfg.student.temperature,
        student_norm=model_input_norm(args.model, cfg),
        teacher_norm=cfg.teacher.train.input_norm, sparsity=args.sparsity,
        crop_pad=cfg.student.train.augment.crop_pad, flip=cfg.student.train.augment.flip,
        calibration_images=cfg.export.calibration_images, check_images=args.check_images)


def cmd_summary(args):
    from tfigkd.models import (build_model, format_summary, mobilenet_v2_cifar,
                               summarize, truncated_student)

    shape = tuple(args.input_shape)
    teacher = mobilenet_v2_cifar(shape, args.classes)
    rows = [summarize(teacher)]
    if args.model:
        rows.append(summarize(build_model(args.model, shape, args.classes), teacher))
    else:
        rows += [summarize(truncated_student(k, shape, args.classes), teacher)
                 for k in args.blocks_removed]
    print(format_summary(rows))


def cmd_students(args):
    from tfigkd.bench.students import format_table, student_table
    from tfigkd.io import write_json

    shape = tuple(args.input_shape)
    if min(shape) < 1 or args.classes < 2:
        raise UserError("--input-shape needs three positive sizes and --classes at least 2.")
    rows = student_table(shape, args.classes, designs=args.designs, target=args.target,
                         max_macs=args.max_macs, max_latency_ms=args.max_latency_ms,
                         runs=args.runs, micro=not args.no_micro, keep_dir=args.out)
    table = format_table(rows)
    print(table)
    if len(rows) == 1:
        print("No design passes the filters; relax --max-macs / --max-latency-ms or the target.")
    if args.out:
        from tfigkd.bench.machine import machine_info

        write_json(os.path.join(args.out, STUDENTS_JSON),
                   {"input_shape": list(shape), "classes": args.classes, "target": args.target,
                    "rows": rows, "machine": machine_info()})
        with open(os.path.join(args.out, STUDENTS_MD), "w") as f:
            f.write(table + "\n")


def cmd_check_config(args):
    from tfigkd.experiments.check import check_buildable

    cfg = _load(args)
    info = check_buildable(cfg)
    print(f"{args.config}: OK ({cfg.name}; {info})")


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
                   choices=("ig", "ig_all_classes", "gradcam", "smoothgrad"),
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
