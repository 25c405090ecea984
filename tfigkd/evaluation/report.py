"""The evaluation ``tfigkd run`` adds to ``report.md`` (and so to ``report.html``).

Teacher and best student on the test split: accuracy and per-class
precision/recall/F1, both confusion matrices, the class pairs the student
confuses most (with example images), latency and size against the teacher,
and what the student got wrong that the teacher got right (counts and a
gallery). For ``tfigkd distill`` runs, also the measured designs and the
choice among them (``design_choice.json``).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tfigkd.evaluation.metrics import (agreement, class_order_check, classification_metrics,
                                       confused_pairs, predict_classes)
from tfigkd.evaluation.plots import confusion_png, image_grid_png
from tfigkd.io import read_json, write_json
from tfigkd.layout import DESIGN_CHOICE, EVALUATION_JSON, PLOTS_DIR

log = logging.getLogger(__name__)

PAIRS = 3            # confused class pairs shown with examples
PAIR_EXAMPLES = 6    # example images per pair
GALLERY = 12         # images the student got wrong and the teacher right


def _images(test, positions):
    if not len(positions):
        return np.zeros((0,), np.uint8)
    return np.asarray(test.take(np.asarray(positions, np.int64)).x)


def evaluate_run(cfg, out_dir, splits, teacher, student_path, teacher_path=None):
    """Evaluates the teacher and the best student on the test split; writes plots and JSON.

    Args:
        cfg: The run's ``ExperimentConfig`` (input normalisations and sizes).
        out_dir: The run folder (plots go to ``plots/``, figures to ``evaluation.json``).
        splits: The run's ``SplitData``.
        teacher: The teacher as a logits ``keras.Model``.
        student_path: The best student's ``.keras``.
        teacher_path: Recorded in the JSON.

    Returns:
        The evaluation dict (also in ``evaluation.json``).
    """
    import keras

    test, names = splits.test, list(splits.class_names)
    k = splits.num_classes
    t_pred = predict_classes(teacher, test, cfg.teacher.train.input_norm, splits.mean,
                             splits.std, cfg.teacher.input_size)
    student = keras.models.load_model(student_path)
    s_pred = predict_classes(student, test, cfg.student.train.input_norm, splits.mean,
                             splits.std)
    y = np.asarray(test.y)
    ev = {"images": int(len(y)), "class_names": names,
          "teacher": classification_metrics(y, t_pred, k),
          "student": classification_metrics(y, s_pred, k),
          "student_path": os.path.abspath(student_path), "teacher_path": teacher_path}
    ev["agreement"] = agreement(y, t_pred, s_pred)
    order = class_order_check(ev["teacher"]["confusion"])
    ev["warnings"] = [] if order is None else [
        f"The teacher's outputs look like the data's classes in another order: relabelling them "
        f"({', '.join(f'output {o} -> {names[c]}' for o, c in list(order['mapping'].items())[:6])}"
        f"{', ...' if len(order['mapping']) > 6 else ''}) would raise its test accuracy from "
        f"{order['accuracy']:.4f} to {order['relabelled_accuracy']:.4f}. The data's classes are "
        "numbered in sorted folder-name order; name the folders so that they sort in the "
        "teacher's class order (e.g. 0_cat, 1_dog)."]
    for w in ev["warnings"]:
        log.warning("%s", w)
    plots = os.path.join(out_dir, PLOTS_DIR)
    os.makedirs(plots, exist_ok=True)
    confusion_png(os.path.join(plots, "confusion.png"),
                  [("teacher", ev["teacher"]["confusion"]),
                   ("student", ev["student"]["confusion"])], names)
    pairs = []
    cm_t = np.asarray(ev["teacher"]["confusion"])
    images, captions = [], []
    for true, pred, n in confused_pairs(ev["student"]["confusion"], PAIRS):
        pos = np.flatnonzero((y == true) & (s_pred == pred))[:PAIR_EXAMPLES]
        pairs.append({"true": true, "predicted": pred, "student": n,
                      "teacher": int(cm_t[true, pred]), "examples": pos.tolist()})
        images += list(_images(test, pos))
        captions += [f"{names[true][:10]} → {names[pred][:10]}"] * len(pos)
    ev["confused_pairs"] = pairs
    ev["pairs_png"] = image_grid_png(os.path.join(plots, "confused_pairs.png"), images,
                                     captions, "student's most confused pairs: true → predicted",
                                     ncols=PAIR_EXAMPLES)
    # Spread over the split (test splits are often ordered by class), not its first images.
    lost = ev["agreement"]["teacher_only_positions"]
    gallery = [lost[i] for i in np.unique(np.linspace(0, len(lost) - 1, min(GALLERY, len(lost)))
                                          .round().astype(int))] if lost else []
    ev["gallery_png"] = image_grid_png(
        os.path.join(plots, "student_regressions.png"), list(_images(test, gallery)),
        [f"{names[y[p]][:9]}: s {names[s_pred[p]][:9]}" for p in gallery],
        "true class: student's answer (the teacher was right)")
    write_json(os.path.join(out_dir, EVALUATION_JSON), ev)
    log.info("Evaluation: teacher %.4f, student %.4f on %d test images; the student got %d "
             "wrong that the teacher got right.", ev["teacher"]["accuracy"],
             ev["student"]["accuracy"], ev["images"], ev["agreement"]["teacher_only"])
    return ev


def compact(ev):
    """The evaluation figures ``summary.json`` keeps (no per-example lists)."""
    a = {k: v for k, v in ev["agreement"].items() if k != "teacher_only_positions"}
    return {"images": ev["images"], "agreement": a, "warnings": ev.get("warnings", []),
            **{m: {"accuracy": ev[m]["accuracy"], "macro_f1": ev[m]["macro_f1"]}
               for m in ("teacher", "student")}}


def _f(v, fmt="{:.3f}"):
    return "-" if v is None else fmt.format(v)


def _cost_lines(summary, best):
    """Latency and size of the student against the teacher."""
    t = summary["teacher"]
    rows = {"teacher": {"params": t["trainable_params"], "macs": t["macs"]},
            "student": {"params": best.get("trainable_params"), "macs": best.get("macs")}}
    lat = (summary.get("deploy") or {}).get("latency")
    by = {r["name"]: r for r in (lat or {}).get("rows", [])}
    int8 = summary.get("int8") or {}
    lines = ["", "### Latency and size against the teacher", "",
             "| model | params | MACs | file | bytes | LiteRT median ms |", "|---|---|---|---|---|---|"]
    for name, key, label in (("teacher_fp32", "teacher", "teacher fp32"),
                             ("teacher_int8", "teacher", "teacher int8"),
                             ("student_int8", "student", "student int8")):
        r = by.get(name, {})
        size = r.get("bytes") or (int8.get("bytes") if name == "student_int8" else None)
        if not r and size is None:
            continue
        lines.append(f"| {label} | {_f(rows[key]['params'], '{:,}')} | "
                     f"{_f(rows[key]['macs'], '{:,}')} | {'phone ' + name.split('_')[1]} | "
                     f"{_f(size, '{:,}')} | {_f(r.get('median_ms'), '{:.4f}')} |")
    if lat:
        lines += ["", f"The student int8 is **{lat['speedup_vs_teacher_fp32']:.1f}x** faster than "
                  f"the fp32 teacher and **{lat['speedup_vs_teacher_int8']:.1f}x** faster than "
                  f"the int8 teacher ({lat['setting']}; a host CPU ranks models, a phone's own "
                  "numbers differ)."]
    elif rows["student"]["macs"]:
        lines += ["", f"The student needs {t['macs'] / max(1, rows['student']['macs']):.1f}x fewer "
                  "multiply-adds than the teacher (latency not measured: set export.latency: true)."]
    return lines


def design_lines(out_dir):
    """The measured designs and the choice among them, when ``tfigkd distill`` made one."""
    path = os.path.join(out_dir, DESIGN_CHOICE)
    if not os.path.exists(path):
        return []
    c = read_json(path)
    budget = ", ".join(f"{k} {v:g}" for k, v in c["budget"].items() if v is not None) or "none"
    lines = ["", "## Student design", "",
             f"Target **{c['target']}**, budget: {budget}. Rule: {c['rule']}. Chosen: "
             f"**{c['chosen']}**. The teacher's input normalisation `{c['teacher_norm']['norm']}` "
             f"comes from {c['teacher_norm']['from']}.", "",
             "| design | params | MACs | int8 bytes | TFLM arena | int8 ms | fits target | "
             "decision |", "|---|---|---|---|---|---|---|---|"]
    for r in c["rows"]:
        if r["name"] == "teacher":
            decision = "the teacher (reference)"
        elif r["name"] == c["chosen"]:
            decision = "**chosen**"
        else:
            decision = "eligible, fewer MACs" if r.get("eligible") else (r.get("excluded") or "-")
        lines.append(f"| {r['name']} | {r['params']:,} | {r['macs']:,} | {r['int8_bytes']:,} | "
                     f"{_f(r.get('arena_bytes'), '{:,}')} | {r['int8_ms']:.4f} | "
                     f"{'yes' if r.get('fits') else 'no: ' + str(r.get('why'))} | {decision} |")
    lines += ["", "int8 latency: LiteRT at batch 1 on 1 thread, median, on this machine, all "
              "files timed in one interleaved run (random weights: the cost does not depend on "
              "them)."]
    return lines


def evaluation_lines(ev, summary, best, out_dir):
    """The Markdown sections of the evaluation (appended to ``report.md``)."""
    names, t, s = ev["class_names"], ev["teacher"], ev["student"]
    lines = design_lines(out_dir)
    lines += ["", f"## Evaluation on the test split ({ev['images']:,} images)", ""]
    lines += [x for w in ev.get("warnings", []) for x in (f"**Warning: {w}**", "")]
    lines += [
              "| model | accuracy | macro F1 |", "|---|---|---|",
              f"| teacher | {t['accuracy']:.4f} | {t['macro_f1']:.4f} |",
              f"| student `{best['name']}` (Keras) | {s['accuracy']:.4f} | {s['macro_f1']:.4f} |"]
    int8 = summary.get("int8")
    if int8:
        lines.append(f"| student int8 (LiteRT) | {int8['test_accuracy']:.4f} | - |")
    lines += ["", "### Per class", "",
              "| class | support | teacher precision | teacher recall | teacher F1 | "
              "student precision | student recall | student F1 |", "|---|---|---|---|---|---|---|---|"]
    for i, name in enumerate(names):
        lines.append(f"| {name} | {t['support'][i]} | {t['precision'][i]:.3f} | "
                     f"{t['recall'][i]:.3f} | {t['f1'][i]:.3f} | {s['precision'][i]:.3f} | "
                     f"{s['recall'][i]:.3f} | {s['f1'][i]:.3f} |")
    lines += _cost_lines(summary, best)
    lines += ["", "### Confusion matrices", "", "Rows: true class; columns: predicted; colour: "
              "share of the row.", "", "![confusion matrices](plots/confusion.png)"]
    if ev["confused_pairs"]:
        lines += ["", "### Class pairs the student confuses most", "",
                  "| true class | predicted as | student | teacher |", "|---|---|---|---|"]
        for p in ev["confused_pairs"]:
            lines.append(f"| {names[p['true']]} | {names[p['predicted']]} | {p['student']} | "
                         f"{p['teacher']} |")
        if ev["pairs_png"]:
            lines += ["", "![examples of the confused pairs](plots/confused_pairs.png)"]
    a = ev["agreement"]
    lines += ["", "### What the student got wrong that the teacher got right", "",
              f"Both right: {a['both_right']:,}; **teacher right, student wrong: "
              f"{a['teacher_only']:,}**; student right, teacher wrong: {a['student_only']:,}; "
              f"both wrong: {a['both_wrong']:,}."]
    if ev["gallery_png"]:
        lines += ["", "![images the student got wrong and the teacher right]"
                  "(plots/student_regressions.png)"]
    return lines
