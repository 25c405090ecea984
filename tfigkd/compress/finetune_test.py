import json
import os

import pytest

from tfigkd.compress.finetune import compress_student
from tfigkd.export.flatbuffer import io_details


# prune runs with `-m large` (~13 s; CI's time limit); QAT, the other path, runs in CI.
@pytest.mark.parametrize("method", ["qat", pytest.param("prune", marks=pytest.mark.large)])
def test_compress_runs_and_converts(trained_tiny, tmp_path, method):
    cfg, splits, path = trained_tiny
    # The tiny model plays both teacher and student: this checks the plumbing.
    r = compress_student(path, path, splits, method=method, out_dir=str(tmp_path), epochs=2,
                         lr=1e-3, batch_size=16, student_norm="dataset", teacher_norm="dataset",
                         sparsity=0.3, calibration_images=32, verbose=False)
    saved = json.load(open(os.path.join(str(tmp_path), f"compress_{method}.json")))
    assert saved[f"{method}_minus_ptq"] == pytest.approx(
        saved[f"{method}_int8"]["accuracy"] - saved["ptq_int8"]["accuracy"])
    with open(r[f"{method}_int8"]["path"], "rb") as f:
        io = io_details(f.read())
    assert io["inputs"][0]["dtype"] == "int8" and io["outputs"][0]["dtype"] == "int8"
    # The fine-tuned int8 model still classifies the (easy) toy data.
    assert r[f"{method}_int8"]["accuracy"] >= 0.8
    if method == "prune":
        assert r["kernel_sparsity"] == pytest.approx(0.3, abs=0.05)


def test_bad_method(trained_tiny):
    _, splits, path = trained_tiny
    with pytest.raises(ValueError, match="method must be"):
        compress_student(path, path, splits, method="distil")
