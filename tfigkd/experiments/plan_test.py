"""The plan: shared artifacts prepared once, and the rows a unit trains on."""

import dataclasses

import numpy as np
import pytest

from tfigkd.config import load_config
from tfigkd.data import load_splits
from tfigkd.errors import UserError
from tfigkd.experiments.plan import Unit, prepare_plan
from tfigkd.io import file_sha256


def test_prepare_plan_shares_teacher_and_maps_and_slices_them_per_unit(tiny_yaml, run_copy):
    cfg = load_config(tiny_yaml)
    splits = load_splits(cfg.data)
    plan = prepare_plan(cfg, run_copy, splits, ["student", "kd_ig"])
    shared = plan.shared
    assert shared.teacher_sha256 == file_sha256(shared.teacher_file)
    assert set(shared.maps) == {"ig"} and len(shared.maps["ig"]) == len(splits.train)
    assert shared.ig_manifest["completeness"]["median_rel_error"] >= 0
    # A Monte Carlo subset: the unit's images, maps and fingerprint all follow its rows.
    rows = np.array([5, 1, 9, 30])
    usplits, umaps, _ = plan.unit_data(Unit("kd_ig", 0, rows=rows))
    np.testing.assert_array_equal(usplits.train.index, splits.train.index[rows])
    np.testing.assert_array_equal(umaps["ig"], np.asarray(shared.maps["ig"])[rows])
    assert usplits.fingerprint != splits.fingerprint
    assert plan.unit_data(Unit("kd_ig", 0))[0] is splits


class _NoTest:
    def __getattr__(self, name):
        raise AssertionError(f"the test split was read (.{name})")


def test_tuning_plan_never_trains_or_evaluates_a_teacher(tiny_yaml, tmp_path):
    cfg = load_config(tiny_yaml)
    splits = dataclasses.replace(load_splits(cfg.data), test=_NoTest())
    plan = prepare_plan(cfg, str(tmp_path), splits, ["student"], tuning=True)
    assert plan.shared.teacher is None and plan.shared.teacher_metrics is None
    with pytest.raises(UserError, match="teacher.path"):
        prepare_plan(cfg, str(tmp_path), splits, ["kd"], tuning=True)
