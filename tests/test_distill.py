"""``tfigkd distill``: teacher + images -> chosen student -> export -> report, on data made here."""

import json
import os

import numpy as np
import pytest
import yaml

from tfigkd.cli import main
from tfigkd.testing import synthetic_images, write_npz

SHAPE = (12, 12, 1)


def small_teacher(path, rescaling=True, epochs=12, shape=SHAPE, classes=3, softmax=False):
    """A plain functional CNN trained on the synthetic bands; with a Rescaling(1/255) input
    layer it takes raw pixels, without one it was trained on pixels / 255."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255.0)(inp) if rescaling else inp
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, activation="softmax" if softmax else None)(x)
    model = keras.Model(inp, out)
    xs, ys = synthetic_images(240, shape, classes, seed=0)
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(
        from_logits=not softmax))
    model.fit(xs.astype("float32") / (1.0 if rescaling else 255.0), ys, epochs=epochs,
              batch_size=32, verbose=0)
    model.save(path)
    return str(path)


def table_row(name, macs, ms, size, fits=True, arena=10_240):
    from tfigkd.models import resolve_design

    builder, kwargs = ("teacher", {}) if name == "teacher" else resolve_design(name)
    return {"name": name, "model": builder, "kwargs": kwargs, "params": macs // 20,
            "macs": macs, "int8_bytes": size, "arena_bytes": arena, "fp32_ms": 2 * ms,
            "int8_ms": ms, "speedup_int8": 1.0, "fits": fits, "why": None if fits else "flash"}


def inject_table(out, teacher, target, rows, shape=SHAPE, classes=3, designs=None):
    """Writes a measured-designs cache into ``out`` as if ``tfigkd distill`` had measured it."""
    from tfigkd.bench.choice import DESIGNS_JSON, cache_key
    from tfigkd.export.targets import load_profile
    from tfigkd.layout import DESIGNS_DIR

    key = cache_key(shape, classes, load_profile(target), teacher, designs)
    os.makedirs(os.path.join(out, DESIGNS_DIR), exist_ok=True)
    with open(os.path.join(out, DESIGNS_DIR, DESIGNS_JSON), "w") as f:
        json.dump({"key": key, "rows": rows}, f)


INJECTED = [table_row("teacher", 5_000_000, 0.5, 2_000_000, fits=False),
            table_row("ds_cnn_s", 40_000, 0.010, 12_000),
            table_row("ds_cnn_m", 180_000, 0.020, 26_000),
            table_row("resnet8_w05", 470_000, 0.030, 30_000),
            table_row("ds_cnn_l", 800_000, 0.045, 88_000)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(str(tmp_path_factory.mktemp("d") / "toy.npz"), n_train=160, n_test=60)


@pytest.fixture(scope="module")
def raw_teacher(tmp_path_factory):
    return small_teacher(tmp_path_factory.mktemp("t") / "raw_teacher.keras")


@pytest.fixture(scope="module")
def plain_teacher(tmp_path_factory):
    return small_teacher(tmp_path_factory.mktemp("t") / "plain.keras", rescaling=False)


def test_chosen_design_is_what_the_rule_picks_from_the_measured_table(raw_teacher, data,
                                                                       tmp_path):
    from tfigkd.bench.choice import choose_design
    from tfigkd.config import load_config
    from tfigkd.experiments.distill import prepare

    out = str(tmp_path / "run")
    inject_table(out, raw_teacher, "mcu", INJECTED)
    cfg, choice = prepare(raw_teacher, data, out, target="mcu", max_latency_ms=0.035)
    # The rule on the same table, by hand: ds_cnn_l is too slow (0.045 ms), the most MACs
    # under 0.035 ms is resnet8_w05.
    want = choose_design([dict(r) for r in INJECTED], 0.035)["name"]
    assert want == choice["chosen"] == "resnet8_w05"
    assert (cfg.student.model.name, cfg.student.model.kwargs) == ("resnet8", {"width": 0.5})
    # The choice and the whole table are recorded, and config.yaml is an ordinary config.
    saved = json.load(open(os.path.join(out, "design_choice.json")))
    assert [r["name"] for r in saved["rows"]] == [r["name"] for r in INJECTED]
    assert {r["name"]: r["excluded"] for r in saved["rows"][1:]}["ds_cnn_l"].startswith(
        "int8 latency 0.0450 ms")
    again = load_config(os.path.join(out, "config.yaml"))
    assert again == cfg
    assert cfg.teacher.path == raw_teacher and cfg.teacher.train.input_norm == "raw"
    assert cfg.data.source == "numpy" and cfg.data.image_size == [12, 12]
    assert cfg.data.color == "grayscale" and cfg.export.targets == ["mcu"]
    assert cfg.export.latency and cfg.student.modes == ["kd"]
    # The recipe comes from tfigkd.recipes, the one place it is decided.
    from tfigkd.recipes import best_recipe

    r = best_recipe(144)  # 160 images less the 10 % validation split
    assert cfg.student.alpha == r["alpha"] and cfg.student.temperature == r["temperature"]
    assert cfg.student.train.epochs == r["train"]["epochs"]
    assert cfg.student.train.batch_size == r["train"]["batch_size"] == 18
    # A size budget instead: 30 KB keeps resnet8_w05 (30,000 B), 29 KB does not.
    assert prepare(raw_teacher, data, out, target="mcu", max_size_kb=29)[1]["chosen"] == "ds_cnn_m"


def test_a_budget_no_design_meets_is_one_line_naming_the_fastest(raw_teacher, data, tmp_path,
                                                                   capsys):
    out = str(tmp_path / "run")
    inject_table(out, raw_teacher, "phone", INJECTED)
    rc = main(["distill", raw_teacher, data, "--target", "phone", "--max-latency-ms", "0.005",
               "--out", out])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "the fastest, ds_cnn_s, takes 0.0100 ms" in err
    assert not os.path.exists(os.path.join(out, "config.yaml"))


def test_a_teacher_without_preprocessing_needs_teacher_norm(plain_teacher, data, tmp_path,
                                                            capsys):
    rc = main(["distill", plain_teacher, data, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "--teacher-norm" in err
    for norm in ("dataset", "unit", "raw", "minus_one_one", "imagenet"):
        assert norm in err
    assert main(["distill", plain_teacher, data, "--teacher-norm", "pixels",
                 "--out", str(tmp_path / "r")]) == 2
    assert "'pixels' is not one of" in capsys.readouterr().err


def test_a_teacher_tfigkd_trained_brings_its_normalisation(trained_tiny, tmp_path):
    """teacher_metrics.json beside the file: input_norm "dataset" with its mean and std."""
    from tfigkd.experiments.distill import prepare

    cfg0, splits, teacher = trained_tiny
    out = str(tmp_path / "run")
    inject_table(out, teacher, "phone", INJECTED[:2], designs=["ds_cnn_s"])
    cfg, choice = prepare(teacher, cfg0.data.path, out, design="ds_cnn_s")
    meta = json.load(open(os.path.join(os.path.dirname(teacher), "teacher_metrics.json")))
    assert cfg.teacher.train.input_norm == "dataset" == meta["input_norm"]
    assert cfg.data.mean == pytest.approx(meta["mean"]) and cfg.data.std == pytest.approx(meta["std"])
    assert choice["chosen"] == "ds_cnn_s" and choice["forced"]


def test_bad_inputs_are_one_line(raw_teacher, data, tmp_path, capsys):
    out = str(tmp_path / "r")
    cases = [
        ([raw_teacher, str(tmp_path / "nope")], "neither a folder"),
        ([str(tmp_path / "none.keras"), data], "does not exist"),
        ([raw_teacher, data, "--design", "nope"], "unknown design 'nope'"),
        ([raw_teacher, data, "--design", "ds_cnn_s", "--max-size-kb", "9"], "--design names"),
        ([raw_teacher, data, "--target", "watch"], "Unknown target 'watch'"),
        ([raw_teacher, data, "--unlabeled", str(tmp_path / "empty")], "no images"),
    ]
    (tmp_path / "empty").mkdir()
    for args, want in cases:
        assert main(["distill", *args, "--out", out]) == 2, args
        err = capsys.readouterr().err
        assert want in err and err.count("\n") == 1, err


def mixed_folder(root, n=10, seed=0):
    """Two classes (bright top vs bottom half), images of mixed sizes and colour modes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("test", n // 2)):
        for label, c in enumerate(("top", "bottom")):
            os.makedirs(root / split / c, exist_ok=True)
            for i in range(count):
                h, w = int(rng.integers(20, 48)), int(rng.integers(20, 48))
                img = rng.integers(0, 60, (h, w, 3), np.uint8)
                img[slice(0, h // 2) if label == 0 else slice(h // 2, h)] += 150
                Image.fromarray(img).convert(("L", "RGB", "RGBA", "P")[i % 4]).save(
                    root / split / c / f"{i}.png")
    return str(root)


def _check_report(out, chosen):
    md = open(os.path.join(out, "report.md")).read()
    html = open(os.path.join(out, "report.html")).read()
    for text in ("## Student design", f"Chosen: **{chosen}**", "## Evaluation on the test split",
                 "### Per class", "### Latency and size against the teacher",
                 "### What the student got wrong that the teacher got right"):
        assert text in md
    assert "plots/confusion.png" in md and "data:image/png;base64," in html
    assert "plots/" not in html.replace("[image not available", "")  # all embedded


@pytest.mark.large  # ~1-2 min: measures 2 designs and the teacher, trains, exports, times
def test_keras_applications_teacher_on_a_mixed_folder_for_phone(tmp_path):
    import keras

    from tfigkd.config import load_config
    from tfigkd.experiments.distill import distill
    from tfigkd.experiments.pipeline import run_pipeline

    teacher = str(tmp_path / "mnv3.keras")
    keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=2,
                                        include_preprocessing=True).save(teacher)
    root = mixed_folder(tmp_path / "imgs")
    out = str(tmp_path / "run")
    s = distill(teacher, root, target="phone", out_dir=out, epochs=1,
                designs=["ds_cnn_s", "ds_cnn_m"], latency_runs=10, verbose=0)
    cfg = load_config(os.path.join(out, "config.yaml"))
    assert cfg.teacher.train.input_norm == "raw" and cfg.data.image_size == [32, 32]
    assert cfg.data.color == "rgb" and cfg.data.source == "image_folder"
    choice = s["design_choice"]
    assert choice["chosen"] == "ds_cnn_m"  # both fit the phone; ds_cnn_m has more MACs
    assert "Rescaling" in choice["teacher_norm"]["from"]
    phone = s["deploy"]["targets"]["phone"]
    assert phone["bytes"] > 0 and os.path.exists(phone["path"])
    assert os.path.exists(os.path.join(os.path.dirname(phone["path"]), "labels.txt"))
    assert s["deploy"]["latency"]["speedup_vs_teacher_fp32"] > 0
    assert s["sizes"]["test"] == 10
    _check_report(out, "ds_cnn_m")
    # tfigkd run DIR/config.yaml --out DIR reproduces it (everything is reused).
    again = run_pipeline(cfg, out, verbose=0)
    assert again["models"] == s["models"] and again["evaluation"] == s["evaluation"]


@pytest.mark.large  # ~1 min
def test_rescaling_teacher_for_mcu(raw_teacher, data, tmp_path):
    from tfigkd.experiments.distill import distill

    out = str(tmp_path / "run")
    s = distill(raw_teacher, data, target="mcu", out_dir=out, epochs=2,
                designs=["ds_cnn_s"], latency_runs=10, verbose=0)
    mcu = s["deploy"]["targets"]["mcu"]
    assert mcu["arena_bytes"] > 0 and os.path.exists(mcu["c_source"])
    ev = s["evaluation"]
    # The evaluation's teacher accuracy is the adopted teacher's own test accuracy.
    assert ev["teacher"]["accuracy"] == pytest.approx(s["teacher"]["test_accuracy"], abs=1e-6)
    assert ev["teacher"]["accuracy"] > 0.9  # fed raw pixels, as its Rescaling layer wants
    assert ev["student"]["accuracy"] == pytest.approx(
        next(m["test_accuracy"] for m in s["models"] if m["name"] == s["best_student"]),
        abs=1e-6)
    _check_report(out, "ds_cnn_s")


@pytest.mark.large  # ~1 min
def test_plain_teacher_with_teacher_norm_for_coral_via_the_cli(plain_teacher, data, tmp_path,
                                                               capsys):
    out = str(tmp_path / "run")
    rc = main(["distill", plain_teacher, data, "--target", "coral", "--design", "ds_cnn_s",
               "--teacher-norm", "unit", "--epochs", "1", "--latency-runs", "10",
               "--out", out])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "student ds_cnn_s for coral" in printed and "tfigkd run" in printed
    s = json.load(open(os.path.join(out, "summary.json")))
    assert s["evaluation"]["teacher"]["accuracy"] > 0.9  # fed pixels / 255, as trained
    assert "coral" in s["deploy"]["targets"]
    cfg = yaml.safe_load(open(os.path.join(out, "config.yaml")).read())
    assert cfg["teacher"]["train"]["input_norm"] == "unit"
    assert cfg["student"]["model"] == {"name": "ds_cnn", "kwargs": {
        "filters": 16, "blocks": 3, "downsample": [1]}}


def test_a_profile_yaml_target_goes_into_the_config(raw_teacher, data, tmp_path):
    from tfigkd.config import load_config
    from tfigkd.experiments.distill import prepare
    from tfigkd.export.targets import load_profile

    board = tmp_path / "board.yaml"
    board.write_text(open(load_profile("mcu").source).read().replace(
        "ram_bytes: 524288", "ram_bytes: 65536"))
    out = str(tmp_path / "run")
    inject_table(out, raw_teacher, str(board), INJECTED)
    cfg, choice = prepare(raw_teacher, data, out, target=str(board), max_size_kb=27)
    assert choice["chosen"] == "ds_cnn_m" and choice["target"] == "mcu"
    assert cfg.export.targets == [str(board)]
    assert load_config(os.path.join(out, "config.yaml")).export.targets == [str(board)]


def test_data_with_the_teachers_classes_in_another_order_is_refused(trained_tiny, tmp_path,
                                                                    capsys):
    _, splits, teacher = trained_tiny
    names = list(splits.class_names)
    npz = tmp_path / "reordered.npz"
    x, y = synthetic_images(60, SHAPE, 3)
    np.savez(npz, x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(names[::-1]))
    assert main(["distill", teacher, str(npz), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "in another order" in err and err.count("\n") == 1
