"""The plan of a run: the students to train and the artifacts they share, prepared once.

Every runner builds one ``RunPlan`` and trains each of its ``Unit``s with
``tfigkd.experiments.student.train_student(plan, unit)``:

- ``tfigkd run``: the config's modes x seeds in the run folder;
- ``tfigkd ablate`` (and ``tfigkd sweep`` through it): modes x seeds x Monte
  Carlo subsets (a unit's ``rows``) in their unit folders;
- ``tfigkd tune``: one unit per trial, with the trial's settings (``cfg``), its
  own folder, validation only (``test=False``) and a pruning callback.

``prepare_plan`` is the one place that loads the teacher (training it first
when the runner may), fills or reuses the stores of the overlay maps and the
clean logit cache, and joins them to the training split. Each store decides
whether it is still current in one way: the recipe it records (data
fingerprint, teacher SHA-256, settings) against the recipe asked for.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

from tfigkd.errors import UserError
from tfigkd.layout import LOGITS_DIR, VIEWS_DIR, student_dir
from tfigkd.modes import parse_mode

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Shared:
    """What the students of a plan share: the teacher, its maps and its clean logits.

    Attributes:
        teacher: The loaded teacher (None when no unit needs one).
        teacher_file: Its ``.keras`` file.
        teacher_sha256: The file's SHA-256 (recorded by every student that used it).
        teacher_metrics: ``teacher_metrics.json`` of a teacher the runner trained or adopted.
        maps: ``{source: maps}`` aligned with ``splits.train`` for overlay modes, else None.
        cached: Clean teacher logits aligned with ``splits.train`` (``teacher_mode: cached``).
        ig_manifest: The IG store's manifest (completeness statistics), when IG was used.
        ig_seconds: Time spent filling the IG store in this call.
    """

    teacher: Any = None
    teacher_file: str | None = None
    teacher_sha256: str | None = None
    teacher_metrics: dict | None = None
    maps: dict | None = None
    cached: Any = None
    ig_manifest: dict | None = None
    ig_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class Unit:
    """One student to train.

    Attributes:
        mode: A mode name (``tfigkd.modes``).
        seed: Its training seed.
        folder: The unit's run folder (default: the plan's); the student goes to
            ``folder/students/{mode}-s{seed}`` unless ``run_dir`` says otherwise.
        rows: Positions in the training split it trains on (a Monte Carlo subset), or None.
        cfg: Its own settings (a tune trial), or None for the plan's.
        run_dir: The student's own folder (a tune trial's), or None.
        test: Whether to evaluate the test split (False while tuning: validation only).
        callbacks: Extra Keras callbacks (a trial's pruning callback).
        recipe: Extra settings recorded with the run (a trial's parameters).
        name: How logs name it.
    """

    mode: str
    seed: int
    folder: str | None = None
    rows: Any = None
    cfg: Any = None
    run_dir: str | None = None
    test: bool = True
    callbacks: tuple = ()
    recipe: dict | None = None
    name: str | None = None


@dataclasses.dataclass
class RunPlan:
    """A config, its data and the artifacts its students share.

    Attributes:
        cfg: ``ExperimentConfig``.
        folder: The folder of the shared artifacts (teacher, stores, caches).
        splits: ``SplitData``.
        shared: ``Shared``.
        verbose: Keras verbosity of the trainings.
    """

    cfg: Any
    folder: str
    splits: Any
    shared: Shared = dataclasses.field(default_factory=Shared)
    verbose: int = 0

    @property
    def views_dir(self):
        """Where the per-view logit caches of every unit go (shared across units and subsets)."""
        return os.path.join(self.folder, VIEWS_DIR)

    def unit_cfg(self, unit):
        return unit.cfg if unit.cfg is not None else self.cfg

    def unit_dir(self, unit):
        """The student's own folder."""
        return unit.run_dir or student_dir(unit.folder or self.folder, unit.mode, unit.seed)

    def unit_data(self, unit):
        """(splits, maps, cached) of the rows a unit trains on."""
        if unit.rows is None:
            return self.splits, self.shared.maps, self.shared.cached
        from tfigkd.data.lazy import select_rows
        from tfigkd.data.split import fingerprint

        train = self.splits.train.take(unit.rows)
        splits = dataclasses.replace(self.splits, train=train, fingerprint=fingerprint(train))
        maps = (None if self.shared.maps is None
                else {k: select_rows(v, unit.rows) for k, v in self.shared.maps.items()})
        cached = None if self.shared.cached is None else self.shared.cached[unit.rows]
        return splits, maps, cached


def plan_of(cfg, folder, splits, teacher=None, maps=None, cached=None, verbose=0):
    """A plan over artifacts the caller already holds (tests, benchmarks, notebooks).

    ``maps`` may be an array of IG maps or ``{source: maps}``; the teacher file
    is ``teacher_path(cfg, folder)`` when it exists.
    """
    from tfigkd.io import file_sha256
    from tfigkd.layout import teacher_path

    tpath = teacher_path(cfg, folder)
    have = os.path.exists(tpath)
    shared = Shared(teacher=teacher, teacher_file=tpath if have else None,
                    teacher_sha256=file_sha256(tpath) if have else None,
                    maps=maps if maps is None or isinstance(maps, dict) else {"ig": maps},
                    cached=cached)
    return RunPlan(cfg, folder, splits, shared, verbose)


def prepare_plan(cfg, folder, splits, modes, *, verbose=0, tuning=False):
    """Prepares (or reuses) everything the students of ``modes`` share.

    Args:
        cfg: ``ExperimentConfig``.
        folder: The shared folder (its lock is the caller's).
        splits: ``SplitData``.
        modes: The mode names the plan's units use.
        verbose: Keras verbosity (progress bars of the stores when > 0).
        tuning: False: train (or adopt and evaluate) the teacher with
            ``train_teacher`` and prepare what the config's weights use. True
            (``tune``): load ``teacher.path`` only, and only if a mode needs a
            teacher (nothing reads the test split); prepare every term a mode
            could use whatever its weight (the search may vary it); cache all
            clean logits (each trial packs its own top k).

    Returns:
        ``RunPlan``.

    Raises:
        UserError: While tuning, a mode needs a teacher and there is no ``teacher.path``.
    """
    from tfigkd.io import file_sha256
    from tfigkd.models import check_fits_data, load_model_file

    parsed = [parse_mode(m) for m in modes]
    shared = Shared()
    if not tuning:
        from tfigkd.experiments.teacher import train_teacher as fit_teacher

        shared.teacher_metrics = fit_teacher(cfg, folder, splits=splits, verbose=verbose)
        tpath = shared.teacher_metrics["model_path"]
    elif any(m.needs_teacher for m in parsed):
        if not cfg.teacher.path:
            raise UserError(f"Modes {', '.join(modes)} need a trained teacher; set teacher.path "
                            "to its .keras file (train one with `tfigkd train-teacher --config "
                            "CONFIG --out DIR`): tuning never trains or evaluates a teacher.")
        tpath = cfg.teacher.path
    else:
        return RunPlan(cfg, folder, splits, shared, verbose)
    shared.teacher = load_model_file(tpath, "teacher")
    # A teacher at its own resolution (teacher.input_size) is fed resized images
    # everywhere below: IG, the logit cache and online KD (the Distiller).
    check_fits_data(shared.teacher, splits, f"Teacher {tpath}", cfg.teacher.input_size)
    shared.teacher_file, shared.teacher_sha256 = tpath, file_sha256(tpath)
    if any(m.overlay and (tuning or m.weights(cfg.student).p > 0) for m in parsed):
        from tfigkd.experiments.attribution import prepare_overlay_maps

        t0 = time.time()
        shared.maps, shared.ig_manifest = prepare_overlay_maps(cfg, folder, splits, modes,
                                                               progress=bool(verbose))
        shared.ig_seconds = time.time() - t0
    if any(m.needs_logit_cache(cfg.student) or (tuning and m.kd and
                                                cfg.student.teacher_mode == "cached")
           for m in parsed):
        from tfigkd.distill.logit_cache import student_logit_cache

        shared.cached = student_logit_cache(cfg, os.path.join(folder, LOGITS_DIR), tpath, splits,
                                            teacher=shared.teacher,
                                            top_k=0 if tuning else None)
    return RunPlan(cfg, folder, splits, shared, verbose)
