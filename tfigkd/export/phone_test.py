"""App-ready phone exports, checked with a real client: MediaPipe Tasks' ImageClassifier."""

import io
import json
import zipfile

import numpy as np
import pytest

from tfigkd.export.exporter import export_model
from tfigkd.export.mediapipe_check import mediapipe_check, mediapipe_classify, rgb_pixels
from tfigkd.export.metadata import classifier_metadata, embed_metadata
from tfigkd.export.phone import input_affine
from tfigkd.export.tflite import tflite_predict


@pytest.fixture(scope="module")
def trained_tiny_rgb(tmp_path_factory):
    """Like ``trained_tiny`` with 12x12x3 images."""
    from tfigkd.config import config_from_dict
    from tfigkd.data import load_splits
    from tfigkd.experiments.teacher import train_teacher
    from tfigkd.testing import tiny_config_dict, write_npz

    tmp = tmp_path_factory.mktemp("tiny_rgb")
    cfg = config_from_dict(tiny_config_dict(write_npz(
        str(tmp / "toy.npz"), n_train=160, n_test=60, shape=(12, 12, 3)), epochs=5))
    metrics = train_teacher(cfg, str(tmp / "run"))
    return cfg, load_splits(cfg.data), metrics["model_path"]


def test_metadata_reads_back_with_mediapipes_schema():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
    data = classifier_metadata("m", "desc", "labels.txt", 4, 32, 24, mean=[1, 2, 3],
                               std=[4, 5, 6], input_min=[0] * 3, input_max=[255] * 3)
    assert data[4:8] == b"M001"
    md = schema.ModelMetadata.GetRootAs(data, 0)
    assert md.Name() == b"m" and md.MinParserVersion() == b"1.0.0"
    sub = md.SubgraphMetadata(0)
    inp, out = sub.InputTensorMetadata(0), sub.OutputTensorMetadata(0)
    assert inp.Content().ContentPropertiesType() == schema.ContentProperties.ImageProperties
    img = schema.ImageProperties()
    img.Init(inp.Content().ContentProperties().Bytes, inp.Content().ContentProperties().Pos)
    assert img.ColorSpace() == schema.ColorSpaceType.RGB
    assert (img.DefaultSize().Width(), img.DefaultSize().Height()) == (32, 24)
    unit = inp.ProcessUnits(0)
    assert unit.OptionsType() == schema.ProcessUnitOptions.NormalizationOptions
    norm = schema.NormalizationOptions()
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    assert list(norm.MeanAsNumpy()) == [1, 2, 3] and list(norm.StdAsNumpy()) == [4, 5, 6]
    assert list(inp.Stats().MaxAsNumpy()) == [255] * 3
    f = out.AssociatedFiles(0)
    assert f.Name() == b"labels.txt"
    assert f.Type() == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    assert out.Content().ContentPropertiesType() == schema.ContentProperties.FeatureProperties


def test_luminance_front_keeps_gray_pictures_exact():
    w, b = input_affine(3, 1, "dataset", [0.3], [0.2])
    pixels = np.arange(0, 256, 15, dtype=np.float64)
    rgb = np.stack([pixels] * 3, -1)
    got = rgb @ w[0, 0].astype(np.float64) + b
    np.testing.assert_allclose(got[:, 0], (pixels / 255 - 0.3) / 0.2, atol=1e-5)
    # Pure red, green, blue frames: BT.601 luminance 0.299 / 0.587 / 0.114.
    got = np.eye(3) * 255 @ w[0, 0].astype(np.float64) + b
    np.testing.assert_allclose(got[:, 0], (np.array([0.299, 0.587, 0.114]) - 0.3) / 0.2,
                               atol=1e-5)
    w, b = input_affine(3, 3, "unit", None, None)
    np.testing.assert_allclose(w[0, 0], np.eye(3) / 255) and np.testing.assert_array_equal(b, 0)


@pytest.mark.parametrize("norm", ["unit", "dataset", "raw", "minus_one_one", "imagenet"])
def test_app_front_feeds_every_normalisation_as_training_does(norm):
    """An adopted teacher (raw, [-1, 1], ImageNet) gets in the app what it got in training."""
    import keras

    from tfigkd.data import normalize
    from tfigkd.export.phone import app_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 5, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    mean, std = (0.2, 0.4, 0.6), (0.3, 0.25, 0.2)
    pixels = np.random.default_rng(1).integers(0, 256, (4, 6, 5, 3)).astype(np.float32)
    want = keras.ops.softmax(model(normalize(pixels, norm, mean, std))).numpy()
    got = app_model(model, norm, mean, std)(pixels).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def _export_and_compare(splits, path, cfg, quant, out, **kw):
    meta = export_model(path, "phone", splits, quant=quant, out_dir=str(out), cfg=cfg,
                        verbose=False, **kw)
    frames = rgb_pixels(splits.test.x)
    lite = tflite_predict(meta["path"], frames.astype(np.float32))
    idx, scores, names = mediapipe_classify(meta["path"], frames)
    # MediaPipe's scores, put back in class order, are LiteRT's probabilities.
    mp_probs = np.zeros_like(lite)
    np.put_along_axis(mp_probs, idx, scores, axis=1)
    return meta, lite, idx, scores, names, mp_probs


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_every_phone_export_runs_in_mediapipe(color, trained_tiny, trained_tiny_rgb, tmp_path):
    cfg, splits, path = trained_tiny if color == "gray" else trained_tiny_rgb
    for quant in ("fp32", "fp16", "int8"):
        meta, lite, idx, scores, names, mp_probs = _export_and_compare(
            splits, path, cfg, quant, tmp_path)
        assert meta["input"]["shape"] == [1, 12, 12, 3], quant  # RGB frames in, also for gray
        assert meta["output"]["dtype"] == "float32"
        if quant == "int8":  # camera bytes as they are
            assert meta["input"]["dtype"] == "uint8"
            assert (meta["input"]["scale"], meta["input"]["zero_point"]) == (1.0, 0)
        # Probabilities (int8: in steps of 1/256).
        np.testing.assert_allclose(lite.sum(1), 1, atol=0.02 if quant == "int8" else 1e-3)
        assert (idx[:, 0] == lite.argmax(1)).mean() >= 0.99, quant
        np.testing.assert_allclose(mp_probs, lite, atol=0.02 if quant == "int8" else 1e-4)
        assert ((scores >= 0) & (scores <= 1)).all()
        assert (names == np.array(splits.class_names, dtype=object)[idx]).all()
        saved = json.load(open(meta["path"][:-len(".tflite")] + ".json"))
        mp = saved["checks"]["mediapipe"]
        assert mp["loads"] is True and mp["agreement_with_litert"] >= 0.99, quant
        assert mp["labels_match"] and mp["scores_in_0_1"] and mp["images"] == len(splits.test)
        lite_check = saved["checks"]["litert"]
        if quant == "fp32":  # pixels -> luminance -> normalisation inside: accuracy unchanged
            assert lite_check["agreement_with_keras"] == 1.0
            assert lite_check["accuracy"] == lite_check["keras_accuracy"]
        with zipfile.ZipFile(meta["path"]) as z:
            assert z.read("labels.txt").decode().split() == list(splits.class_names)


def test_grayscale_input_kept_when_asked_and_mediapipe_says_why(trained_tiny, tmp_path):
    cfg, splits, path = trained_tiny
    meta = export_model(path, "phone", splits, quant="fp32", out_dir=str(tmp_path), cfg=cfg,
                        verbose=False, rgb_input=False)
    assert meta["input"]["shape"] == [1, 12, 12, 1]
    assert meta["checks"]["litert"]["agreement_with_keras"] == 1.0
    assert meta["checks"]["mediapipe"]["loads"] is False
    assert "RGB" in meta["checks"]["mediapipe"]["error"]


def test_without_mediapipe_it_says_not_checked(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError
    check = mediapipe_check(str(tmp_path / "x.tflite"), np.zeros((1, 4, 4, 3), np.uint8),
                            [0], [0], ["a"])
    assert check["loads"] == "not checked" and "pip install" in check["error"]


def test_embedding_is_deterministic_and_refuses_a_second_metadata(monkeypatch):
    import time

    import keras

    from tfigkd.export.tflite import convert

    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    raw = convert(model, "fp32")
    md = classifier_metadata("m", "d", "labels.txt", 2, 4, 4, [0] * 3, [1] * 3, [0] * 3,
                             [255] * 3)
    once = embed_metadata(raw, md, {"labels.txt": b"a\nb\n"})
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)  # an export an hour later
    assert embed_metadata(raw, md, {"labels.txt": b"a\nb\n"}) == once  # same sha256 each export
    with zipfile.ZipFile(io.BytesIO(once)) as z:
        assert z.read("labels.txt") == b"a\nb\n"
    with pytest.raises(ValueError, match="already has TFLite metadata"):
        embed_metadata(once, md, {})
