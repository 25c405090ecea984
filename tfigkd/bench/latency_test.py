import json
import os

import pytest

from tfigkd.bench.latency import benchmark_tflite, speedups
from tfigkd.bench.suite import run_bench


def test_rows_and_speedups_are_consistent(trained_tiny, tmp_path):
    cfg, splits, path = trained_tiny
    entries = [{"name": "teacher", "role": "teacher", "keras_path": path},
               {"name": "copy", "role": "student", "keras_path": path}]
    r = run_bench(entries, splits, str(tmp_path), quants=("fp32", "int8"), batches=(1, 4),
                  threads=(1,), runs=6, warmup=1, calibration_images=16, verbose=False, cfg=cfg)
    rows = r["rows"]
    assert len(rows) == 2 * 2 * 2
    for row in rows:
        assert row["runs"] >= 6 and row["min_ms"] <= row["median_ms"] <= row["max_ms"]
        assert row["median_ms"] <= row["p90_ms"] <= row["max_ms"]
        assert row["median_ms_per_image"] == pytest.approx(row["median_ms"] / row["batch"])
        assert row["bytes"] == os.path.getsize(row["path"]) and row["macs"] > 0
    s = {(x["quant"], x["batch"]): x for x in r["speedups"]}
    assert set(s) == {("fp32", 1), ("fp32", 4), ("int8", 1), ("int8", 4)}
    t = {(x["quant"], x["batch"]): x["median_ms"] for x in rows if x["role"] == "teacher"}
    c = {(x["quant"], x["batch"]): x["median_ms"] for x in rows if x["role"] == "student"}
    assert s[("fp32", 1)]["speedup_vs_teacher"] == pytest.approx(t[("fp32", 1)] / c[("fp32", 1)])
    assert s[("fp32", 1)]["mac_ratio"] == pytest.approx(1.0)
    saved = json.load(open(tmp_path / "bench.json"))
    assert saved["runs"] == 6 and len(saved["rows"]) == 8
    assert os.path.getsize(tmp_path / "latency.png") > 1000
    assert "| teacher | int8 |" in open(tmp_path / "bench.md").read()
    # The official tool ran on the batch-1, 1-thread files and its figure sits beside ours.
    crossed = [x for x in rows if x["batch"] == 1]
    assert all(x["litert_benchmark"]["runs"] >= 6 for x in crossed)
    assert all(x["litert_benchmark_check"] in ("agree", "below resolution", "disagree")
               for x in crossed)
    assert "litert-benchmark median ms" in open(tmp_path / "bench.md").read()


def test_speedups_need_a_teacher_row():
    rows = [{"name": "s", "role": "student", "quant": "fp32", "batch": 1, "threads": 1,
             "median_ms": 1.0, "macs": 1}]
    assert speedups(rows) == []


def test_all_cores_thread_setting(trained_tiny, tmp_path):
    from tfigkd.export.tflite import convert, save_tflite

    import keras

    cfg, splits, path = trained_tiny
    p = str(tmp_path / "m.tflite")
    save_tflite(convert(keras.models.load_model(path), "fp32"), p)
    rows = benchmark_tflite([{"name": "m", "path": p}], batches=(2,), threads=(None,), runs=3,
                            warmup=0, rounds=3, progress=False)
    assert rows[0]["threads"] == os.cpu_count() and rows[0]["runs"] == 3


def test_litert_benchmark_wrapper_times_a_tiny_model(trained_tiny, tmp_path):
    import keras

    from tfigkd.bench.latency import compare_with_litert_benchmark, litert_benchmark
    from tfigkd.export.tflite import convert, save_tflite

    _, _, path = trained_tiny
    p = str(tmp_path / "m.tflite")
    save_tflite(convert(keras.models.load_model(path), "fp32"), p)
    got = litert_benchmark(p, threads=1, runs=50, warmup=5)
    assert got["runs"] == 50 and 0 < got["min_ms"] <= got["median_ms"] <= got["p95_ms"] + 0.01
    assert compare_with_litert_benchmark(got["median_ms"], got) in ("agree", "below resolution")
    slow = dict(got, median_ms=10.0)
    assert compare_with_litert_benchmark(1.0, slow) == "disagree"
    assert compare_with_litert_benchmark(9.0, slow) == "agree"
    assert litert_benchmark(str(tmp_path / "missing.tflite")) is None
