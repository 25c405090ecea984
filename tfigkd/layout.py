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
# Stored maps joined to a streamed training split (data larger than memory).
JOINED_MAPS_DIR = "work/maps"
STUDENTS_DIR = "students"
EXPORT_DIR = "export"


def teacher_path(cfg, out_dir):
    """The teacher a run uses: ``teacher.path`` from the config, else ``DIR/teacher.keras``."""
    if cfg.teacher.path:
        return os.path.abspath(os.path.expanduser(cfg.teacher.path))
    return os.path.join(out_dir, TEACHER_FILE)


def student_dir(out_dir, mode, seed):
    return os.path.join(out_dir, STUDENTS_DIR, f"{mode}-s{seed}")
