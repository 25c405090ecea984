"""Bring your own data and teacher: mixed image folders, other input normalisations and sizes."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tfigkd.testing import tiny_run_config, write_config
from tfigkd.cli import main


def mixed_class_folder(root, n=12, seed=0):
    """Two classes (bright top half vs bright bottom half), mixed sizes and modes."""
    rng = np.random.default_rng(seed)
    modes = ["L", "RGB", "RGBA", "P"]
    for label, c in enumerate(("top", "bottom")):
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            h, w = int(rng.integers(10, 24)), int(rng.integers(10, 24))
            img = rng.integers(0, 60, (h, w, 3), np.uint8)
            half = slice(0, h // 2) if label == 0 else slice(h // 2, h)
            img[half] += 150
            Image.fromarray(img).convert(modes[i % 4]).save(root / c / f"{i}.png")
    return root


def folder_config(root, **changes):
    cfg = tiny_run_config("unused", **changes)
    cfg["data"] = {"source": "image_folder", "path": str(root), "val_fraction": 0.25,
                   "test_fraction": 0.25, "image_size": [12, 12], "color": "rgb",
                   **changes.pop("data", {})}
    cfg["teacher"]["train"]["epochs"] = 1
    cfg["student"]["modes"] = ["kd_ig"]
    cfg["student"]["train"]["epochs"] = 1
    cfg["ig"]["n_steps"] = 4
    return cfg


# Each policy is checked pixel by pixel in tfigkd/data/images_test.py; here one run
# per policy (13 s each) shows the pipeline takes the result, two of them as large.
@pytest.mark.parametrize("resize", ["stretch", pytest.param("crop", marks=pytest.mark.large),
                                    pytest.param("pad", marks=pytest.mark.large)])
def test_mixed_folder_runs_end_to_end(tmp_path, resize):
    root = mixed_class_folder(tmp_path / "imgs")
    cfg = folder_config(root)
    cfg["data"]["resize"] = resize
    cfg["teacher"]["input_size"] = [16, 14]  # trained here at its own size; online KD
    out = tmp_path / "run"
    assert main(["run", write_config(tmp_path / "c.yaml", cfg), "--out", str(out)]) == 0
    teacher = json.loads((out / "teacher_metrics.json").read_text())
    assert teacher["input_shape"] == [16, 14, 3]
    import keras

    assert keras.models.load_model(teacher["model_path"]).input_shape == (None, 16, 14, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sizes"] == {"train": 14, "val": 4, "test": 6}
    [student] = summary["models"]
    assert student["mode"] == "kd_ig" and 0.0 <= student["test_accuracy"] <= 1.0


def raw_softmax_teacher(splits, size, path, epochs=40):
    """A teacher made elsewhere: raw 0-255 input at its own size, built-in rescaling, softmax."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((*size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(splits.num_classes, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(0.03), "sparse_categorical_crossentropy")
    model.fit(tf.image.resize(splits.train.x, size, antialias=True), splits.train.y,
              epochs=epochs, verbose=0)
    model.save(path)
    return model


def test_raw_teacher_at_its_own_resolution_end_to_end(tmp_path, caplog):
    import tensorflow as tf

    from tfigkd.config import config_from_dict
    from tfigkd.data import load_splits

    root = mixed_class_folder(tmp_path / "imgs", n=16)
    cfg = folder_config(root)
    cfg["teacher"]["input_size"] = [20, 20]
    cfg["teacher"]["train"]["input_norm"] = "raw"
    cfg["student"]["teacher_mode"] = "cached"
    splits = load_splits(config_from_dict(cfg).data)
    assert splits.input_shape == (12, 12, 3)
    cfg["teacher"]["path"] = str(tmp_path / "teacher.keras")
    teacher = raw_softmax_teacher(splits, (20, 20), cfg["teacher"]["path"])

    def seen_by_teacher(x):  # what the teacher must see: raw pixels at 20x20
        return tf.image.resize(tf.cast(x, tf.float32), (20, 20), antialias=True)

    probs = teacher.predict(seen_by_teacher(splits.test.x), verbose=0)
    want_acc = float(np.mean(probs.argmax(1) == splits.test.y))
    assert want_acc > 0.8  # the teacher learned the task at its own size and scale

    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        assert main(["run", write_config(tmp_path / "c.yaml", cfg), "--out", str(out)]) == 0
    assert "outputs probabilities" in caplog.text
    metrics = json.loads((out / "teacher_metrics.json").read_text())
    assert metrics["adopted"] and metrics["input_shape"] == [20, 20, 3]
    assert metrics["test_accuracy"] == pytest.approx(want_acc)
    # Cached logits: log-probabilities of the teacher on raw, resized training images.
    with np.load(out / "teacher_logits" / "logits.npz") as z:
        index, logits = z["index"], z["logits"]
    np.testing.assert_array_equal(index, splits.train.index)
    want = np.log(np.maximum(teacher.predict(seen_by_teacher(splits.train.x), verbose=0), 1e-12))
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
    # IG maps computed at 20x20, stored at the student's 12x12, distributions.
    from tfigkd.experiments.attribution import load_ig_maps

    maps = load_ig_maps(config_from_dict(cfg), str(out), splits)
    assert maps.shape == (len(splits.train), 12, 12)
    np.testing.assert_allclose(maps.reshape(len(maps), -1).sum(1), 1.0, rtol=1e-4)


@pytest.mark.large  # ~40 s of CPU (MobileNetV2 graph building); run with -m large
def test_keras_applications_teacher_example(tmp_path):
    """docs/own_data.md's example, tiny: MobileNetV2 (weights=None) fine-tuned, then distilled."""
    import importlib.util

    from tfigkd.testing import ROOT

    spec = importlib.util.spec_from_file_location(
        "example", os.path.join(ROOT, "examples", "keras_applications_teacher.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    root = mixed_class_folder(tmp_path / "imgs", n=12)
    summary = example.main(str(root), str(tmp_path / "run"), image_size=(16, 16),
                           teacher_size=(32, 32), teacher_epochs=1, student_epochs=1,
                           modes=("kd",), verbose=0)
    teacher = json.loads((tmp_path / "run" / "teacher_metrics.json").read_text())
    assert teacher["adopted"] and teacher["input_shape"] == [32, 32, 3]
    assert teacher["input_norm"] == "minus_one_one"
    [student] = summary["models"]
    assert student["mode"] == "kd" and 0.0 <= student["test_accuracy"] <= 1.0


def test_streaming_trains_the_same_teacher_and_maps(tmp_path):
    """memory_budget_mb: 0 streams every batch from the disk cache; results are bit-identical."""
    import keras

    from tfigkd.experiments.attribution import load_ig_maps, precompute_ig
    from tfigkd.config import config_from_dict
    from tfigkd.data import load_splits
    from tfigkd.data.lazy import LazyRows
    from tfigkd.experiments.plan import Unit, plan_of
    from tfigkd.experiments.student import train_student
    from tfigkd.experiments.teacher import train_teacher

    root = mixed_class_folder(tmp_path / "imgs")
    results = []
    for budget in (None, 0):
        cfg = folder_config(root)
        cfg["data"]["memory_budget_mb"] = budget
        cfg["teacher"]["train"]["epochs"] = 2
        cfg = config_from_dict(cfg)
        splits = load_splits(cfg.data)
        assert isinstance(splits.train.x, LazyRows) == (budget == 0)
        out = str(tmp_path / f"run-{budget}")
        metrics = train_teacher(cfg, out, splits=splits)
        precompute_ig(cfg, out, splits=splits, progress=False)
        teacher = keras.models.load_model(metrics["model_path"])
        maps = load_ig_maps(cfg, out, splits)
        # Streamed images get streamed maps (joined once into the run folder).
        assert isinstance(maps, LazyRows) == (budget == 0)
        train_student(plan_of(cfg, out, splits, teacher=teacher, maps=maps), Unit("kd_ig", 0))
        results.append((metrics, teacher.get_weights(), np.asarray(maps),
                        keras.models.load_model(os.path.join(out, "students", "kd_ig-s0",
                                                             "student.keras")).get_weights()))
    (m_mem, w_mem, maps_mem, s_mem), (m_lazy, w_lazy, maps_lazy, s_lazy) = results
    assert m_mem["fingerprint"] == m_lazy["fingerprint"]
    assert m_mem["test_accuracy"] == m_lazy["test_accuracy"]
    for a, b in zip(w_mem, w_lazy):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(maps_mem, maps_lazy)
    # The overlay student (IG maps streamed beside the images) trains the same weights.
    for a, b in zip(s_mem, s_lazy):
        np.testing.assert_array_equal(a, b)
