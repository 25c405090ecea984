import json
import os

import pytest
import yaml

from tfigkd.cli import main
from tfigkd.export.exporter import export_model
from tfigkd.export.micro import read_c_array
from tfigkd.export.targets import TargetCheckError, load_profile


def test_mcu_export_writes_checked_files(trained_tiny, tmp_path):
    cfg, splits, path = trained_tiny
    meta = export_model(path, "mcu", splits, out_dir=str(tmp_path), cfg=cfg, verbose=False)
    assert meta["quant"] == "int8" and meta["input"]["dtype"] == "int8"
    assert meta["output"]["dtype"] == "int8" and not meta["app_ready"]  # MCU keeps int8 IO
    # Per file: whether MediaPipe's ImageClassifier loads it (an MCU file: no).
    assert meta["checks"]["mediapipe"]["loads"] is False
    assert "INT8" in meta["checks"]["mediapipe"]["error"]
    with open(meta["path"], "rb") as f:
        data = f.read()
    assert meta["bytes"] == len(data)
    saved = json.load(open(meta["path"][:-len(".tflite")] + ".json"))
    assert saved["class_names"] == ["class0", "class1", "class2"]
    assert open(saved["labels_file"]).read().split() == saved["class_names"]
    assert saved["normalisation"]["input_norm"] == "dataset"
    assert saved["normalisation"]["mean"] == pytest.approx(list(splits.mean))
    assert str(saved["input"]["zero_point"]) in saved["normalisation"]["quantised_input"]
    lite, tflm = saved["checks"]["litert"], saved["checks"]["tflm"]
    assert lite["agreement_with_keras"] >= 0.9 and lite["images"] == len(splits.test)
    assert lite["accuracy_drop"] == pytest.approx(lite["keras_accuracy"] - lite["accuracy"])
    assert 0 < tflm["arena_bytes"] < 1 << 20 and tflm["agreement_with_litert"] >= 0.95
    assert read_c_array(tflm["c_source"]) == data


def test_coral_and_phone(trained_tiny, tmp_path):
    cfg, splits, path = trained_tiny
    coral = export_model(path, "coral", splits, out_dir=str(tmp_path), cfg=cfg, verbose=False)
    assert coral["input"]["dtype"] == "uint8" and coral["output"]["dtype"] == "uint8"
    if not coral["checks"]["edgetpu_compiler"]["ran"]:
        assert any("NOT compiled" in w for w in coral["warnings"])
    phone = export_model(path, "phone", splits, out_dir=str(tmp_path), cfg=cfg, verbose=False)
    assert phone["quant"] == "fp16" and phone["input"]["dtype"] == "float32"
    assert phone["app_ready"] and phone["checks"]["mediapipe"]["loads"] is True
    assert not coral["app_ready"] and coral["checks"]["mediapipe"]["loads"] is False
    assert phone["checks"]["litert"]["agreement_with_keras"] >= 0.95
    with pytest.raises(TargetCheckError, match="does not take 'fp16'"):
        export_model(path, "mcu", splits, quant="fp16", out_dir=str(tmp_path), cfg=cfg)


def _profile(tmp_path, **changes):
    data = yaml.safe_load(open(load_profile("mcu").source))
    data.update(changes)
    p = tmp_path / "board.yaml"
    p.write_text(yaml.safe_dump(data))
    return load_profile(str(p))


def test_unsupported_op_is_named(trained_tiny, tmp_path):
    cfg, splits, path = trained_tiny
    prof = _profile(tmp_path, allowed_ops=["CONV_2D", "DEPTHWISE_CONV_2D", "ADD"])
    with pytest.raises(TargetCheckError, match=r"ops not supported on mcu: .*MEAN.*FULLY_CONNECTED"):
        export_model(path, "mcu", splits, out_dir=str(tmp_path / "o"), cfg=cfg, profile=prof)
    assert not os.path.exists(tmp_path / "o" / "run_mcu_int8.tflite")  # nothing half-written


def test_op_version_caveat(trained_tiny, tmp_path):
    cfg, splits, path = trained_tiny
    prof = _profile(tmp_path, max_op_versions={"CONV_2D": 1})
    with pytest.raises(TargetCheckError, match="CONV_2D is version .* edgetpu_compiler"):
        export_model(path, "mcu", splits, out_dir=str(tmp_path), cfg=cfg, profile=prof)


@pytest.mark.parametrize("limit,match", [({"flash_bytes": 1000}, "bytes of flash"),
                                         ({"ram_bytes": 2000}, "tensor arena")])
def test_over_budget_is_refused(trained_tiny, tmp_path, limit, match):
    cfg, splits, path = trained_tiny
    prof = _profile(tmp_path, **limit)
    with pytest.raises(TargetCheckError, match=match):
        export_model(path, "mcu", splits, out_dir=str(tmp_path), cfg=cfg, profile=prof)


def test_cli_export_and_clear_failure(trained_tiny, tmp_path, capsys):
    cfg, splits, path = trained_tiny
    from tfigkd.config import config_to_dict

    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(config_to_dict(cfg)))
    out = tmp_path / "exp"
    assert main(["export", "--config", str(conf), "--model", path, "--target", "phone",
                 "--quant", "int8", "--out", str(out)]) == 0
    assert (out / "run_phone_int8.tflite").exists() and (out / "labels.txt").exists()
    printed = capsys.readouterr().out
    assert "MediaPipe ImageClassifier loads it: top-1 agrees with LiteRT" in printed
    saved = json.load(open(out / "run_phone_int8.json"))
    assert saved["checks"]["mediapipe"]["loads"] is True
    assert saved["input"]["dtype"] == "uint8" and saved["output"]["dtype"] == "float32"
    # Checking a file before shipping it: what an app would see.
    assert main(["check-phone", "--config", str(conf), str(out / "run_phone_int8.tflite")]) == 0
    printed = capsys.readouterr().out
    assert "TFLITE_METADATA" in printed and "labels.txt" in printed
    assert "MediaPipe ImageClassifier loads it" in printed
    gray = tmp_path / "gray"
    assert main(["export", "--config", str(conf), "--model", path, "--quant", "fp32",
                 "--gray-input", "--out", str(gray), "--check-images", "8"]) == 0
    assert main(["check-phone", "--config", str(conf), str(gray / "run_phone_fp32.tflite")]) == 2
    assert "MediaPipe cannot load" in capsys.readouterr().err
    board = _profile(tmp_path, flash_bytes=1000)
    assert main(["export", "--config", str(conf), "--model", path, "--profile", board.source,
                 "--out", str(out)]) == 2
    assert "bytes of flash" in capsys.readouterr().err


def test_profiles_load_and_reject_typos(tmp_path):
    for t in ("phone", "coral", "mcu"):
        assert load_profile(t).target == t
    p = tmp_path / "bad.yaml"
    p.write_text("target: x\nflash_kb: 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_profile(str(p))
    with pytest.raises(ValueError, match="Unknown target"):
        load_profile("watch")


def test_packaged_profiles_are_the_repository_profiles(monkeypatch):
    import tfigkd.export.targets as targets

    pkg = os.path.join(os.path.dirname(targets.__file__), "profiles")
    monkeypatch.setenv("TFIGKD_PROFILES", pkg)  # what an installed wheel reads
    for t in ("phone", "coral", "mcu"):
        prof = load_profile(t)
        assert prof.source.startswith(pkg)
        repo = os.path.join(os.path.dirname(os.path.dirname(pkg)), "..", "tflite", f"{t}.yaml")
        with open(prof.source) as a, open(repo) as b:
            assert a.read() == b.read()


@pytest.fixture(scope="module")
def own_size_model(trained_tiny, tmp_path_factory):
    """A logits CNN at 18x16 (not the data's 12x12; non-square to catch H/W swaps), unit inputs."""
    import keras

    from tfigkd.export.exporter import model_pixels

    _, splits, _ = trained_tiny
    keras.utils.set_random_seed(0)
    inp = keras.Input((18, 16, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(splits.num_classes)(x))
    model.compile(keras.optimizers.Adam(0.03),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(model_pixels(splits.train.x, (18, 16)) / 255.0, splits.train.y, epochs=20,
              verbose=0)
    path = str(tmp_path_factory.mktemp("own_size") / "teacher18x16" / "model.keras")
    os.makedirs(os.path.dirname(path))
    model.save(path)
    return splits, path, model


@pytest.mark.parametrize("target, quant", [("phone", "fp32"), ("phone", "int8"),
                                           ("mcu", "int8")])
def test_model_at_its_own_input_size_exports(own_size_model, tmp_path, caplog, target, quant):
    import numpy as np
    import tensorflow as tf

    splits, path, model = own_size_model
    # What the model must see: the test images resized (bilinear, antialiased) to 18x16.
    x = tf.image.resize(tf.cast(splits.test.x, tf.float32), (18, 16), antialias=True) / 255.0
    want = float(np.mean(model.predict(x, verbose=0).argmax(1) == splits.test.y))
    assert want > 0.6  # it learned the task at its own size
    with caplog.at_level("INFO", logger="tfigkd.export"):
        meta = export_model(path, target, splits, quant=quant, out_dir=str(tmp_path),
                            input_norm="unit", verbose=False)
    assert "takes 18x16 images and the data's are 12x12" in caplog.text
    assert meta["image_resize"]["from"] == [12, 12] and meta["image_resize"]["to"] == [18, 16]
    assert meta["input"]["shape"][1:3] == [18, 16]
    lite = meta["checks"]["litert"]
    assert lite["keras_accuracy"] == pytest.approx(want)
    assert lite["accuracy"] == pytest.approx(want)
    assert lite["agreement_with_keras"] >= (1.0 if quant == "fp32" else 0.95)
    assert meta["calibration_images"] == (0 if quant == "fp32" else min(256, len(splits.train)))
    if target == "mcu":
        assert meta["checks"]["tflm"]["agreement_with_litert"] >= 0.95
        assert meta["checks"]["tflm"]["accuracy"] == pytest.approx(want, abs=0.05)
    else:
        from tfigkd.export.mediapipe_check import check_phone_file

        assert meta["app_ready"] and meta["input"]["shape"][-1] == 3  # gray model, RGB pixels in
        assert check_phone_file(meta["path"], splits)["litert"]["accuracy"] == lite["accuracy"]
        assert meta["checks"]["mediapipe"]["loads"] in (True, "not checked")


def test_model_of_the_data_size_is_not_resized(trained_tiny, tmp_path, caplog):
    cfg, splits, path = trained_tiny
    with caplog.at_level("INFO", logger="tfigkd.export"):
        meta = export_model(path, "phone", splits, quant="fp32", out_dir=str(tmp_path), cfg=cfg,
                            verbose=False, check_images=8)
    assert meta["image_resize"] is None and "resized" not in caplog.text


def test_adopted_teacher_file_gets_the_teacher_normalisation(tmp_path):
    """``teacher.path`` names a file not called teacher.keras: it still gets the teacher's norm."""
    from tfigkd.config import config_from_dict
    from tfigkd.export.exporter import model_input_norm

    teacher = tmp_path / "my_teacher.keras"
    teacher.write_bytes(b"")
    cfg = config_from_dict({"teacher": {"path": str(teacher),
                                        "train": {"input_norm": "minus_one_one"}}})
    assert model_input_norm(str(teacher), cfg) == "minus_one_one"
    assert model_input_norm(str(tmp_path / "students" / "student.keras"), cfg) == "unit"
    assert model_input_norm(str(teacher), cfg, override="imagenet") == "imagenet"


@pytest.mark.parametrize("target", ["phone", "mcu"])
def test_streamed_test_split_is_checked_in_blocks_with_the_same_results(tmp_path, monkeypatch,
                                                                        target):
    """A test split streamed from disk is checked block by block: same figures as in memory."""
    import keras

    from tfigkd.config import DataConfig
    from tfigkd.data import load_splits
    from tfigkd.data.images_test import mixed_folder
    from tfigkd.data.lazy import LazyRows
    from tfigkd.export import sampling

    root = mixed_folder(tmp_path / "imgs", n=12)
    base = dict(source="image_folder", path=str(root), image_size=[10, 8], color="grayscale",
                val_fraction=0.1, test_fraction=0.4, cache_dir=str(tmp_path / "c"))
    mem, lazy = load_splits(DataConfig(**base)), load_splits(DataConfig(**base, memory_budget_mb=0))
    assert isinstance(lazy.test.x, LazyRows) and len(lazy.test) >= 8
    # Predicts "bright" vs "dark" around the median test brightness, so the predictions
    # vary from image to image and a block read out of order changes the figures.
    import numpy as np

    t = float(np.median(np.asarray(mem.test.x, np.float32).mean((1, 2, 3)) / 255.0))
    model = keras.Sequential([keras.Input((10, 8, 1)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    model.layers[-1].set_weights([np.array([[20.0, -20.0]], np.float32),
                                  np.array([-20 * t, 20 * t], np.float32)])
    path = str(tmp_path / "m" / "model.keras")
    os.makedirs(os.path.dirname(path))
    model.save(path)
    # Blocks of 3 images: the split is read in several blocks.
    monkeypatch.setattr(sampling, "CHECK_BLOCK_BYTES", 3 * 10 * 8 * 4)
    blocks = list(sampling.check_blocks(lazy.test, None))
    assert len(blocks) == -(-len(lazy.test) // 3) > 2
    got = {}
    for name, splits in (("mem", mem), ("lazy", lazy)):
        meta = export_model(path, target, splits, quant="int8", out_dir=str(tmp_path / name),
                            input_norm="unit", verbose=False, micro_images=5)
        got[name] = meta["checks"]
    assert got["lazy"]["litert"] == got["mem"]["litert"]
    assert got["lazy"]["litert"]["images"] == len(mem.test)
    assert 0 < got["mem"]["litert"]["accuracy"] < 1  # the figures depend on the order
    if target == "mcu":
        assert got["lazy"]["tflm"]["images"] == got["mem"]["tflm"]["images"] == 5
        assert got["lazy"]["tflm"]["agreement_with_litert"] == \
            got["mem"]["tflm"]["agreement_with_litert"]
    else:
        assert got["lazy"]["mediapipe"]["images"] == len(mem.test)


def test_secondary_checks_read_a_bounded_sample_of_a_streamed_split(tmp_path, monkeypatch):
    """bench / compress / check-phone: a streamed test split is capped and read into memory."""
    import numpy as np

    from tfigkd.config import DataConfig
    from tfigkd.data import load_splits
    from tfigkd.data.images_test import mixed_folder
    from tfigkd.export import sampling

    root = mixed_folder(tmp_path / "imgs", n=8)
    base = dict(source="image_folder", path=str(root), image_size=[6, 5], color="rgb",
                test_fraction=0.5,
                cache_dir=str(tmp_path / "c"))
    mem, lazy = load_splits(DataConfig(**base)), load_splits(DataConfig(**base, memory_budget_mb=0))
    monkeypatch.setattr(sampling, "MEDIAPIPE_STREAMED_IMAGES", 3)
    sub = sampling.check_subset(lazy.test)
    assert isinstance(sub.x, np.ndarray) and len(sub) == 3
    np.testing.assert_array_equal(sub.x, mem.test.x[:3])
    np.testing.assert_array_equal(sub.y, mem.test.y[:3])
    assert len(sampling.check_subset(lazy.test, 5)) == 5  # an explicit count is kept
    assert len(sampling.check_subset(mem.test)) == len(mem.test)  # in memory: all
