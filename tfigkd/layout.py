"""Where each stage of a run folder (``--out DIR``) keeps its results.

One place for these names, so the stages that write a file and the stages
that read it cannot drift apart.
"""

from __future__ import annotations

import os

TEACHER_FILE = "teacher.keras"
TEACHER_METRICS = "teacher_metrics.json"
IG_DIR = "ig"
ATTRIBUTIONS_DIR = "attributions"  # stored overlay maps other than IG: attributions/<source>
LOGITS_DIR = "teacher_logits"
VIEWS_DIR = "teacher_views"  # per-view logit caches: teacher_views/<view recipe key>
# Stored maps joined to a streamed training split (data larger than memory).
JOINED_MAPS_DIR = os.path.join("work", "maps")
STUDENTS_DIR = "students"
EXPORT_DIR = "export"
WORK_DIR = "work"  # checkpoints of unfinished training (work/<stage>)
LOGS_DIR = "logs"  # TensorBoard event files
# Inside a work/<stage> folder (tfigkd/experiments/fit.py): the resume state.
WORK_STATE, WORK_RECIPE = "state.json", "recipe.json"
# One trained model's folder (a student, a tune trial).
MODEL_FILE = "student.keras"
METRICS_FILE = "metrics.json"
# tfigkd run
SUMMARY_JSON = "summary.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
# The human-readable evaluation of every run (tfigkd/evaluation): HTML twin of report.md.
REPORT_HTML = "report.html"
EVALUATION_JSON = "evaluation.json"
# tfigkd distill: the config it wrote, the measured designs and the choice among them.
CONFIG_YAML = "config.yaml"
DESIGNS_DIR = "designs"
DESIGN_CHOICE = "design_choice.json"
CURVES_PNG, MODES_PNG, IG_GRID_PNG = "curves.png", "modes.png", "ig_grid.png"  # in plots/
# tfigkd ablate / sweep
SUBSETS_DIR = "subsets"
AGREEMENT_DIR = "agreement"
ABLATION_JSON, ABLATION_MD = "ablation.json", "ablation.md"
ABLATION_PLOTS = ("ablation_accuracy.png", "ablation_differences.png")
AGREEMENT_FILE = "agreement.json"  # in each student folder
TEACHER_VAL_MAPS = "teacher_val_maps.npz"  # in agreement/, with its .json
SWEEP_JSON, SWEEP_MD, SWEEP_PNG = "sweep.json", "sweep.md", "sweep.png"
SWEEP_COSTS = "sweep_costs.json"
# tfigkd tune
STUDY_DB = "study.db"
TRIALS_DIR = "trials"
BEST_YAML = "best.yaml"
TRIALS_CSV = "trials.csv"
TUNE_MD = "tune.md"
TUNE_JSON = "tune.json"
PARETO_DIR = "pareto"
TUNE_HISTORY_PNG, TUNE_IMPORTANCES_PNG = "tune_history.png", "tune_importances.png"
TUNE_SLICE_PNG, TUNE_PARETO_PNG = "tune_slice.png", "tune_pareto.png"
# tfigkd export: beside the .tflite files (and embedded in phone files' metadata)
LABELS_FILE = "labels.txt"
# tfigkd bench / students
BENCH_MODELS_DIR = "models"
BENCH_JSON, BENCH_MD, LATENCY_PNG = "bench.json", "bench.md", "latency.png"
STUDENTS_JSON, STUDENTS_MD = "students.json", "students.md"


def teacher_path(cfg, out_dir):
    """The teacher a run uses: ``teacher.path`` from the config, else ``DIR/teacher.keras``."""
    if cfg.teacher.path:
        return os.path.abspath(os.path.expanduser(cfg.teacher.path))
    return os.path.join(out_dir, TEACHER_FILE)


def student_dir(out_dir, mode, seed):
    return os.path.join(out_dir, STUDENTS_DIR, f"{mode}-s{seed}")
