"""``tfigkd sweep`` on tiny data: students share one teacher; accuracy vs cost, Pareto fronts."""

import json
import os

import pytest

from tfigkd.testing import tiny_run_config, write_config
from tfigkd.ablation.pareto import pareto_front
from tfigkd.cli import main
from tfigkd.config import config_from_dict
from tfigkd.errors import UserError
from tfigkd.experiments.sweep import sweep, sweep_students


def test_pareto_front_on_fixed_points():
    pts = [("a", 1, 0.80), ("b", 2, 0.85), ("c", 3, 0.84), ("d", 3, 0.90), ("e", 1, 0.70),
           ("f", 5, 0.90), ("g", 4, None)]
    # c is beaten by b (cheaper, better); e by a; f by d (same accuracy, cheaper); g has no value.
    assert pareto_front(pts) == ["a", "b", "d"]
    assert pareto_front([("x", 1, 0.5), ("y", 1, 0.5)]) == ["x", "y"]  # ties both stay


def test_students_of_the_sweep_section():
    cfg = config_from_dict({"sweep": {"truncation_depths": [3, 9], "designs": ["ds_cnn_s"]}})
    assert sweep_students(cfg.sweep) == {
        "truncated_k3": ("truncated_student", {"blocks_removed": 3}),
        "truncated_k9": ("truncated_student", {"blocks_removed": 9}),
        "ds_cnn_s": ("ds_cnn", {"filters": 16, "blocks": 3, "downsample": [1]})}
    with pytest.raises(UserError, match="sweep.designs: unknown design 'nope'"):
        sweep_students(config_from_dict({"sweep": {"designs": ["nope"]}}).sweep)


def test_sweep_end_to_end(toy_npz, ig_run, tmp_path, capsys):
    import shutil

    d = tiny_run_config(toy_npz)
    d["student"].update(teacher_mode="cached", alpha=0.5)
    d["ablation"] = {"agreement_images": 0, "bootstrap_resamples": 200}
    d["student"]["train"]["epochs"] = 1
    d["sweep"] = {"truncation_depths": [16, 15], "latency_runs": 20}
    cfg = config_from_dict(d)
    out = str(tmp_path / "sw")
    # The shared run's teacher has this config's recipe: the sweep reuses it.
    os.makedirs(out)
    for name in ("teacher.keras", "teacher_metrics.json"):
        shutil.copy(os.path.join(ig_run, name), out)
    report = sweep(cfg, out, seeds=[0], modes=["kd"])
    # One teacher and one logit cache for all students; each student its own ablation.
    assert os.path.exists(os.path.join(out, "teacher.keras"))
    assert os.path.isdir(os.path.join(out, "teacher_logits"))
    for name in ("truncated_k16", "truncated_k15"):
        sub = os.path.join(out, "students", name)
        assert not os.path.exists(os.path.join(sub, "teacher.keras"))
        ab = json.load(open(os.path.join(sub, "ablation.json")))
        assert ab["finished"] == 1
        m = json.load(open(os.path.join(sub, "students", "kd-s0", "metrics.json")))
        assert m["run_recipe"]["student"]["model"]["kwargs"] == {"blocks_removed": int(name[-2:])}
    saved = json.load(open(os.path.join(out, "sweep.json")))
    designs = saved["designs"]
    # Two blocks cost more than one; the teacher row is the config's teacher (one block).
    assert designs["truncated_k15"]["params"] > designs["truncated_k16"]["params"]
    assert designs["truncated_k15"]["macs"] > designs["truncated_k16"]["macs"]
    assert saved["teacher"]["params"] == designs["truncated_k16"]["params"]
    assert all(v["int8_ms"] > 0 for v in designs.values())
    assert len(saved["rows"]) == 2 and all(r["n"] == 1 for r in saved["rows"])
    for mode in ("kd",):
        rows = {r["design"]: r for r in saved["rows"] if r["mode"] == mode}
        assert rows["truncated_k16"]["mean"] == report["rows"][0]["mean"] == json.load(open(
            os.path.join(out, "students", "truncated_k16", "students", "kd-s0",
                         "metrics.json")))["test_accuracy"]
        for cost in ("params", "macs", "int8_ms"):
            front = saved["pareto"][mode][cost]
            assert front == pareto_front([(n, r[cost], r["mean"]) for n, r in rows.items()])
            assert "truncated_k16" in front or rows["truncated_k16"]["mean"] < \
                rows["truncated_k15"]["mean"]
    text = open(os.path.join(out, "sweep.md")).read()
    assert "| truncated_k16 |" in text and "Pareto" in text
    assert os.path.getsize(os.path.join(out, "sweep.png")) > 1000
    # The CLI's report-only pass trains nothing and reuses the measured costs.
    stamp = os.path.getmtime(os.path.join(out, "sweep_costs.json"))
    path = write_config(tmp_path / "c.yaml", d)
    assert main(["sweep", path, "--out", out, "--seeds", "1", "--modes", "kd",
                 "--report"]) == 0
    assert "2 students x 1 modes" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(out, "sweep_costs.json")) == stamp
