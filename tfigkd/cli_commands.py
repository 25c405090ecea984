"""The commands of ``tfigkd`` (``tfigkd/cli.py`` parses the arguments and calls one).

Each is thin: it loads the config and calls the function the Python API calls.
"""

from __future__ import annotations

import os

from tfigkd.errors import UserError
from tfigkd.layout import ABLATION_MD, STUDENTS_JSON, STUDENTS_MD, SWEEP_MD

def _load(args):
    from tfigkd.config import load_config
    from tfigkd.distribute import prepare

    cfg = load_config(args.config, args.set)
    prepare(cfg)  # logical devices and a multi-worker strategy come before any TF op
    return cfg


def cmd_train_teacher(args):
    from tfigkd.experiments.teacher import train_teacher

    cfg = _load(args)
    metrics = train_teacher(cfg, args.out)
    if "worker" in metrics:  # a non-chief worker of train.distribute: multi_worker
        print(f"worker {metrics['worker']} done; the chief writes the results. "
              f"weights_sha256={metrics['weights_sha256']}")
        return
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

    from tfigkd.distribute import prepare

    cfg = load_config(args.config_path, args.set)
    prepare(cfg)
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
    from tfigkd.compress.finetune import FinetuneSettings, compress_student
    from tfigkd.data import load_splits
    from tfigkd.export.inputs import model_input_norm

    cfg = _load(args)
    scfg = cfg.student
    settings = FinetuneSettings(
        method=args.method, epochs=args.epochs, lr=args.lr, batch_size=scfg.train.batch_size,
        alpha=scfg.alpha, temperature=scfg.temperature,
        student_norm=model_input_norm(args.model, cfg), teacher_norm=cfg.teacher.train.input_norm,
        sparsity=args.sparsity, crop_pad=scfg.train.augment.crop_pad,
        flip=scfg.train.augment.flip, calibration_images=cfg.export.calibration_images,
        check_images=args.check_images)
    compress_student(args.model, args.teacher, load_splits(cfg.data), settings, out_dir=args.out)


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


def cmd_distill(args):
    from tfigkd.experiments.distill import distill

    s = distill(args.teacher, args.data, target=args.target, out_dir=args.out,
                max_latency_ms=args.max_latency_ms, max_size_kb=args.max_size_kb,
                design=args.design, epochs=args.epochs, teacher_norm=args.teacher_norm,
                unlabeled=args.unlabeled, image_size=args.image_size,
                latency_runs=args.latency_runs)
    c = s["design_choice"]
    ev = s["evaluation"]
    print(f"student {c['chosen']} for {c['target']}: test accuracy "
          f"{ev['student']['accuracy']:.4f} (teacher {ev['teacher']['accuracy']:.4f})")
    for target, r in ((s.get("deploy") or {}).get("targets") or {}).items():
        print(f"{target}: {r['path']} ({r['bytes']:,} bytes, LiteRT accuracy "
              f"{r['litert_accuracy']:.4f})")
    lat = (s.get("deploy") or {}).get("latency")
    if lat:
        print(f"int8 student is {lat['speedup_vs_teacher_fp32']:.1f}x faster than the fp32 "
              f"teacher in LiteRT (batch 1, 1 thread)")
    from tfigkd.layout import CONFIG_YAML, REPORT_HTML

    print(f"report: {os.path.join(args.out, REPORT_HTML)}; reproduce: tfigkd run "
          f"{os.path.join(args.out, CONFIG_YAML)} --out {args.out}")


def cmd_check_config(args):
    from tfigkd.experiments.check import check_buildable

    cfg = _load(args)
    info = check_buildable(cfg)
    print(f"{args.config}: OK ({cfg.name}; {info})")
