"""Does distillation pay? Plain training vs KD recipes of one student, paired over seeds.

Each *section* is one ``tfigkd ablate`` run (its own folder, resumable) of
``configs/kd_recipe_fashion_mnist.yaml`` with a few overrides:

- ``consistent``: plain CE (``student``) and consistent KD from per-view
  teacher logits (``kd``, ``teacher_mode: per_view``);
- ``mixup``: the same with mixup on every mode (function matching for
  ``kd``; ``student`` is then the "CE + mixup" control);
- ``cached``: KD from logits of the un-augmented image (``teacher_mode:
  cached``, the recipe before this study);
- ``few_labels``: ``data.labeled_subset`` labelled images, the rest of the
  training split unlabelled: the labelled-only student vs KD that also
  distils on the unlabelled images;
- ``ig``: ``kd``, ``kd_ig`` and the controls ``kd_noise``, ``kd_shuffled`` on
  the consistent recipe;
- ``alpha_0.9``, ``alpha_1_t1``: other KD weights and temperatures on the
  consistent recipe (the per-view cache is shared: only the students train);
- ``long``: the consistent recipe over twice the epochs;
- ``xs``: a second, >= 30x smaller-latency student (16 filters, 2 blocks);
- ``full``: the full labelled training set (costly: ``--section-seeds full=0,1,2``
  runs fewer seeds there; 6 epochs, which is already 3x the steps of the others).

Sections other than the first four are opt-in through ``--sections``.

Every mode of every section trains with the same seeds, so a seed's student
has the same initialisation and data order everywhere, and the study compares
each KD variant with the plain student of the ``consistent`` section on
per-seed differences (bootstrap CI, paired t and Wilcoxon, Holm over all the
comparisons of the study: ``tfigkd.ablation.stats``). Validation accuracy per
epoch (the training curves) comes from each student's history.

Usage::

    .venv/bin/python benchmarks/kd_recipe.py --out runs/kd_recipe --seeds 0 1 2 3 4 \\
        [--sections consistent mixup cached few_labels ig long xs] [--set student.train.epochs=12] \\
        [--section-seeds full=0,1,2] [--latency]

Writes ``benchmarks/results/kd_recipe_fashion_mnist/`` (``kd_recipe.json``,
``kd_recipe.md``, ``curves.png`` and each section's ``ablation.md``).
Sections already finished are read back, not retrained.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tfigkd.config import load_config  # noqa: E402
from tfigkd.io import write_json, write_text  # noqa: E402

log = logging.getLogger("kd_recipe")
CONFIG = os.path.join(ROOT, "configs", "kd_recipe_fashion_mnist.yaml")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "kd_recipe_fashion_mnist")

# name -> (overrides, modes, what it shows)
SECTIONS = {
    "consistent": ([], ["student", "kd"], "plain CE vs consistent KD (per-view logits)"),
    "mixup": (["student.mix=mixup"], ["student", "kd"],
              "CE + mixup vs KD + mixup (function matching)"),
    "cached": (["student.teacher_mode=cached"], ["kd"],
               "KD from logits of the un-augmented image (the earlier recipe)"),
    "few_labels": (["data.labeled_subset=1000"], ["student", "kd"],
                   "1,000 labelled + the rest unlabelled: labelled-only CE vs KD on all images"),
    "ig": (["ig.n_steps=16", "student.p=0.1"], ["kd", "kd_ig", "kd_noise", "kd_shuffled"],
           "the IG overlay and its controls on consistent KD"),
    "alpha_0.9": (["student.alpha=0.9"], ["kd"],
                  "consistent KD with more weight on the teacher (alpha 0.9, T 4)"),
    "alpha_1_t1": (["student.alpha=1.0", "student.temperature=1.0"], ["kd"],
                   "pure function matching: teacher only, no labels used (alpha 1, T 1)"),
    "long": (["student.train.epochs=24"], ["student", "kd"],
             "a twice as patient schedule (24 epochs): plain CE vs consistent KD"),
    "xs": (["student.model={name: ds_cnn, kwargs: {filters: 16, blocks: 2, downsample: [0]}}"],
           ["student", "kd"], "the >= 30x student (ds_cnn_xs, 16 filters, 2 blocks)"),
    "xs_alpha_0.1": (["student.model={name: ds_cnn, kwargs: {filters: 16, blocks: 2, "
                      "downsample: [0]}}", "student.alpha=0.1"], ["kd"],
                     "the >= 30x student with a light KD weight (alpha 0.1)"),
    "full": (["data.train_subset=null", "student.train.epochs=6"], ["student", "kd"],
             "the full labelled training set (54,000 + 6,000 validation), 6 epochs: 3x the "
             "steps of the 12 epochs on 9,000"),
}
# Comparisons reported: (section a, mode a, section b, mode b, family); b is the baseline.
# Holm corrects within each family, one question each:
#   kd_pays  - does KD beat plain training of the same student, data and schedule?
#   recipe   - does a variant beat consistent KD (12 epochs, alpha 0.5, T 4)?
#   controls - what mixup or a longer schedule do to plain cross-entropy;
#   ig       - does the IG overlay (or a control overlay) add to consistent KD?
COMPARISONS = [
    ("consistent", "kd", "consistent", "student", "kd_pays"),
    ("mixup", "kd", "mixup", "student", "kd_pays"),
    ("few_labels", "kd", "few_labels", "student", "kd_pays"),
    ("xs", "kd", "xs", "student", "kd_pays"),
    ("xs_alpha_0.1", "kd", "xs", "student", "kd_pays"),
    ("long", "kd", "long", "student", "kd_pays"),
    ("full", "kd", "full", "student", "kd_pays"),
    ("cached", "kd", "consistent", "kd", "recipe"),
    ("mixup", "kd", "consistent", "kd", "recipe"),
    ("alpha_0.9", "kd", "consistent", "kd", "recipe"),
    ("alpha_1_t1", "kd", "consistent", "kd", "recipe"),
    ("long", "kd", "consistent", "kd", "recipe"),
    ("mixup", "student", "consistent", "student", "controls"),
    ("long", "student", "consistent", "student", "controls"),
    ("ig", "kd_ig", "ig", "kd", "ig"),
    ("ig", "kd_noise", "ig", "kd", "ig"),
    ("ig", "kd_shuffled", "ig", "kd", "ig"),
]


def share_views(out, name):
    """Points a new section's per-view cache folder at the ``consistent`` section's.

    A cache is keyed by its full view recipe (data, seed, epochs, batch,
    augmentation, mixing, teacher), so sections whose students see the same
    views (other alpha or T, another student design) reuse the teacher's
    logits instead of recomputing them, and the others add their own keys.
    """
    from tfigkd.layout import VIEWS_DIR

    common = os.path.abspath(os.path.join(out, "consistent", VIEWS_DIR))
    views = os.path.join(out, name, VIEWS_DIR)
    if name != "consistent" and os.path.isdir(common) and not os.path.lexists(views):
        os.makedirs(os.path.dirname(views), exist_ok=True)
        os.symlink(common, views)


def run_section(name, out, seeds, extra):
    from tfigkd.experiments.ablate import ablate

    overrides, modes, _ = SECTIONS[name]
    share_views(out, name)
    cfg = load_config(CONFIG, [*overrides, *extra, "student.train.verbose=0"])
    report = ablate(cfg, os.path.join(out, name), seeds=seeds, modes=modes)
    return report, cfg


def _by_seed(report, mode):
    return {r["seed"]: r for r in report["runs"] if r["mode"] == mode}


def compare(results):
    from tfigkd.ablation.stats import holm, paired_compare

    rows = []
    for sa, ma, sb, mb, family in COMPARISONS:
        if sa not in results or sb not in results:
            continue
        a, b = _by_seed(results[sa], ma), _by_seed(results[sb], mb)
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2:
            continue
        c = paired_compare([a[s]["test_accuracy"] for s in seeds],
                           [b[s]["test_accuracy"] for s in seeds])
        rows.append({"a": f"{sa}/{ma}", "b": f"{sb}/{mb}", "family": family, "seeds": seeds,
                     **{k: c[k] for k in ("n", "mean_diff", "ci_low", "ci_high", "t_p",
                                          "wilcoxon_p", "cohen_d", "mde")}})
    for family in dict.fromkeys(r["family"] for r in rows):
        members = [r for r in rows if r["family"] == family]
        for r, p in zip(members, holm([r["t_p"] for r in members])):
            r["holm_p"] = p
    return rows


def describe_modes(results):
    from tfigkd.ablation.stats import describe

    out = {}
    for sec, rep in results.items():
        for mode in sorted({r["mode"] for r in rep["runs"]}):
            runs = list(_by_seed(rep, mode).values())
            out[f"{sec}/{mode}"] = {
                "test_accuracy": describe([r["test_accuracy"] for r in runs]),
                "val_curve_mean": np.mean([r["val_curve"] for r in runs], axis=0).tolist()
                if all(r.get("val_curve") for r in runs) else None}
    return out


def _f(v, fmt="{:+.4f}"):
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)


def markdown(summary):
    lines = ["# Does KD pay? (Fashion-MNIST, shipped teacher, ds_cnn_m unless a section says)",
             "", f"Command: `{summary['command']}`", "",
             f"Teacher test accuracy: {summary['teacher_test_accuracy']:.4f}. "
             f"Sizes: {summary['sizes']}. Epochs: {summary['epochs']}.", "",
             "| section | what it shows | epochs | alpha | T | seeds |", "|---|---|---|---|---|---|"]
    for k, d in summary["sections"].items():
        lines.append(f"| {k} | {d['what']} | {d['epochs']} | {d['alpha']} | {d['temperature']} "
                     f"| {d['seeds']} |")
    lines += ["",
             "| variant | test accuracy, mean +- sd | n |", "|---|---|---|"]
    for k, d in summary["modes"].items():
        t = d["test_accuracy"]
        lines.append(f"| {k} | {t['mean']:.4f} +- {t['sd']:.4f} | {t['n']} |")
    lines += ["", "Holm corrects within each family of comparisons (kd_pays: KD vs plain training "
              "of the same student, data and schedule; recipe: a variant vs consistent KD; "
              "controls: mixup or a longer schedule on plain cross-entropy; ig: an overlay on "
              "top of consistent KD).", "",
              "| family | a | vs b | n | mean diff [95 % CI] | paired t p | Holm p | detectable |",
              "|---|---|---|---|---|---|---|---|"]
    for r in summary["comparisons"]:
        lines.append(f"| {r['family']} | {r['a']} | {r['b']} | {r['n']} | {_f(r['mean_diff'])} "
                     f"[{_f(r['ci_low'])}, "
                     f"{_f(r['ci_high'])}] | {_f(r['t_p'], '{:.2g}')} | "
                     f"{_f(r['holm_p'], '{:.2g}')} | {_f(r['mde'], '{:.4f}')} |")
    if summary.get("latency"):
        lines += ["", "int8 LiteRT latency, batch 1, 1 thread (median of "
                  f"{summary['latency']['rounds']} interleaved rounds):", "",
                  "| model | sections | ms | speedup vs teacher int8 |", "|---|---|---|---|"]
        for r in summary["latency"]["rows"]:
            lines.append(f"| {r['model']} | {', '.join(r['sections'])} | "
                         f"{r['int8_ms_median']:.4f} | {r['speedup_int8_vs_teacher_int8']:.1f}x |")
    return "\n".join(lines) + "\n"


def latency(results, out, teacher_path, rounds=3, runs=300):
    """int8 LiteRT latency (batch 1, 1 thread) of the teacher and each section's student
    design, interleaved over ``rounds`` so that load drifts hit all alike; median ms."""
    import keras

    from tfigkd.bench.model_latency import design_key, measure_int8_latency_ms
    from tfigkd.layout import student_dir

    models = {"teacher": keras.models.load_model(teacher_path, compile=False)}
    designs = {}
    for sec, rep in results.items():
        run = rep["runs"][0]
        m = keras.models.load_model(os.path.join(student_dir(os.path.join(out, sec), run["mode"],
                                                             run["seed"]), "student.keras"))
        key = design_key(m, runs)
        designs.setdefault(key, []).append(sec)
        models.setdefault(key, m)
    times = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            times[k].append(measure_int8_latency_ms(m, runs=runs))
    t_ms = float(np.median(times["teacher"]))
    rows = [{"model": "teacher", "sections": [], "int8_ms_median": t_ms,
             "int8_ms_rounds": times["teacher"], "speedup_int8_vs_teacher_int8": 1.0}]
    for k, secs in designs.items():
        ms = float(np.median(times[k]))
        rows.append({"model": models[k].name, "sections": secs,
                     "params": int(models[k].count_params()), "int8_ms_median": ms,
                     "int8_ms_rounds": times[k], "speedup_int8_vs_teacher_int8": t_ms / ms})
    return {"rounds": rounds, "runs_per_round": runs, "batch": 1, "threads": 1, "rows": rows}


def plot_curves(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, d in summary["modes"].items():
        if d["val_curve_mean"]:
            ax.plot(range(1, len(d["val_curve_mean"]) + 1), d["val_curve_mean"], label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/kd_recipe")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--sections", nargs="+", default=["consistent", "mixup", "cached",
                                                      "few_labels"], choices=list(SECTIONS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--section-seeds", action="append", default=[], metavar="SECTION=S,S",
                    help="fewer (or other) seeds for one section, e.g. full=0,1,2")
    ap.add_argument("--results", default=RESULTS)
    ap.add_argument("--latency", action="store_true",
                    help="also time the int8 teacher and each student design in LiteRT")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    section_seeds = {}
    for item in args.section_seeds:
        name, _, seeds = item.partition("=")
        if name not in SECTIONS or not seeds:
            ap.error(f"--section-seeds {item!r}: use SECTION=0,1,2 with a section of "
                     f"{', '.join(SECTIONS)}")
        section_seeds[name] = [int(s) for s in seeds.split(",")]
    results, cfg, settings = {}, None, {}
    for name in args.sections:
        log.info("Section %s: %s", name, SECTIONS[name][2])
        seeds = section_seeds.get(name, args.seeds)
        report, cfg = run_section(name, args.out, seeds, args.set)
        settings[name] = {"what": SECTIONS[name][2], "overrides": SECTIONS[name][0],
                          "epochs": cfg.student.train.epochs, "alpha": cfg.student.alpha,
                          "temperature": cfg.student.temperature, "seeds": seeds}
        # Each student's validation curve, from its metrics.json history.
        from tfigkd.io import read_json
        from tfigkd.layout import METRICS_FILE, student_dir

        for r in report["runs"]:
            m = read_json(os.path.join(student_dir(os.path.join(args.out, name), r["mode"],
                                                   r["seed"]), METRICS_FILE))
            r["val_curve"] = m.get("history", {}).get("val_accuracy")
        results[name] = report
        os.makedirs(os.path.join(args.results, name), exist_ok=True)
        shutil.copy(os.path.join(args.out, name, "ablation.md"),
                    os.path.join(args.results, name, "ablation.md"))
    from tfigkd.io import read_json

    teacher = read_json(os.path.join(args.out, args.sections[0], "teacher_metrics.json"))
    summary = {"command": "python benchmarks/kd_recipe.py " + " ".join(sys.argv[1:] if argv is None
                                                                        else argv),
               "teacher_test_accuracy": teacher["test_accuracy"],
               "sizes": teacher["sizes"], "epochs": settings[args.sections[0]]["epochs"],
               "alpha": settings[args.sections[0]]["alpha"],
               "temperature": settings[args.sections[0]]["temperature"],
               "sections": settings,
               "modes": describe_modes(results), "comparisons": compare(results),
               "runs": {k: v["runs"] for k, v in results.items()}}
    if args.latency:
        summary["latency"] = latency(results, args.out, teacher["model_path"])
    os.makedirs(args.results, exist_ok=True)
    write_json(os.path.join(args.results, "kd_recipe.json"), summary)
    write_text(os.path.join(args.results, "kd_recipe.md"), markdown(summary))
    plot_curves(summary, os.path.join(args.results, "curves.png"))
    log.info("\n%s", markdown(summary))


if __name__ == "__main__":
    main()
