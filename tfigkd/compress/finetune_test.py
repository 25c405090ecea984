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


def test_finetune_objective_is_the_distillers_loss():
    """QAT/pruning fine-tuning optimises exactly the Distiller's loss (one weighting, one set of
    terms): same batch, same cached teacher logits -> same value."""
    import keras
    import numpy as np

    from tfigkd.compress.finetune import kd_objective
    from tfigkd.distill import Distiller

    rng = np.random.default_rng(0)
    x = rng.random((8, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 8)
    index = np.arange(100, 108)
    teacher_logits = rng.normal(size=(8, 3)).astype("float32") * 3
    inputs = keras.Input((6, 6, 1))
    student = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    alpha, temperature = 0.3, 2.0
    d = Distiller(student, None, alpha=alpha, temperature=temperature,
                  cached_logits=teacher_logits, cached_index=index)
    total = d.losses_for({"image": x, "index": index}, y)[0]
    packed = np.concatenate([y[:, None].astype("float32"), teacher_logits], 1)
    ours = np.mean(kd_objective(alpha, temperature)(packed, student(x, training=False)))
    np.testing.assert_allclose(ours, float(total), rtol=1e-5)
