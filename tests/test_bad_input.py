"""Bad input and damaged files: each case must end in exit code 2, one error line that
names the problem, and leave earlier finished work intact.

The cases run the real CLI (``tfigkd.cli.main``) in this process, so the whole
path from argument parsing to the error message is exercised without paying
for a TensorFlow start-up per case.
"""

import gzip
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from tfigkd.testing import tiny_run_config, write_config
from tfigkd.cli import main
from tfigkd.data.idx import write_idx
from tfigkd.testing import synthetic_images


def expect_error(capsys, argv, *needles):
    """Runs the CLI; asserts exit 2 and exactly one error line containing every needle."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("tfigkd: error:")]
    assert len(lines) == 1, err
    # One line: no continuation lines after it.
    assert err.rstrip().endswith(lines[0]), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if os.environ.get("TFIGKD_CASE_LOG"):  # collects every message for the release notes
        with open(os.environ["TFIGKD_CASE_LOG"], "a") as f:
            f.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\t{lines[0]}\n")
    return lines[0]


def snapshot(folder):
    """SHA-256 of every finished file under ``folder`` (lock and temp files excluded)."""
    out = {}
    for root, _, files in os.walk(folder):
        for fn in files:
            if fn.startswith(".tmp-") or fn.endswith(".lock"):
                continue
            path = os.path.join(root, fn)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ------------------------------------------------------------------ configs

def _cfg(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


CONFIG_CASES = {
    "empty_file": ("", [], ["is empty"]),
    "binary_file": (bytes(range(256)) * 4, [], ["not a text file"]),
    "yaml_list_with_set": ("- a\n- b\n", ["teacher.train.epochs=2"], ["top level must be a mapping"]),
    "set_unclosed_bracket": (None, ["student.seeds=[1"], ["--set 'student.seeds=[1'", "not valid YAML"]),
    "set_without_equals": (None, ["student.seeds"], ["must look like key.sub=value"]),
    "set_into_scalar": (None, ["name.sub=1"], ["'name' is not a section"]),
    "bad_yaml_syntax": ("name: x\n  data: [\n", [], ["not valid YAML at line"]),
    "unknown_key": (None, ["teacher.trian.epochs=2"], ["teacher.trian: unknown key", "'train'"]),
    "wrong_type": (None, ["teacher.train.epochs=ten"], ["teacher.train.epochs: expected an integer"]),
    "out_of_range": (None, ["data.val_fraction=1.5"], ["data.val_fraction: 1.5 is out of range"]),
    "bad_choice": (None, ["ig.method=simpson"], ["ig.method: 'simpson' is not one of"]),
    "unknown_mode": (None, ["student.modes=[kd_ij]"], ["'kd_ij' is not a mode", "kd_ig"]),
    "unknown_model": (None, ["student.model.name=resnet9000"],
                      ["student.model", "Unknown model 'resnet9000'"]),
    "bad_model_kwarg": (None, ["student.model.kwargs={depth: 3}"],
                        ["student.model", "Bad arguments for model 'truncated_student'", "depth"]),
    "impossible_model_kwarg": (None, ["student.model.kwargs={blocks_removed: 40}"],
                               ["student.model"]),
    "missing_data_path": (None, ["data.path=/nonexistent/toy.npz"],
                          ["data.path: '/nonexistent/toy.npz' does not exist"]),
    "missing_teacher_path": (None, ["teacher.path=/nonexistent/t.keras"], ["teacher.path"]),
    "at_layer_missing": (None, ["student.modes=[at]", "student.at_layers=[[features_9, features_9]]"],
                         ["student.at_layers", "no feature block 'features_9'", "Valid pairs"]),
    "at_size_mismatch": (None, ["student.modes=[at]", "student.model.name=resnet8",
                                "student.model.kwargs={}",
                                "student.at_layers=[[features_2, features_1]]"],
                         ["'features_2' is 6x6 but 'features_1' is 12x12",
                          "Valid pairs: [features_0, features_0]"]),
    "at_no_common_size": (None, ["student.modes=[kd_at]", "student.model.name=ds_cnn",
                                 "student.model.kwargs={}", "student.at_pairing=auto"],
                          ["no student block has the spatial size", "KD works across"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_errors(case, tmp_path, capsys, tiny_yaml):
    text, sets, needles = CONFIG_CASES[case]
    path = tiny_yaml if text is None else _cfg(tmp_path, text)
    argv = ["check-config", "--config", path]
    for s in sets:
        argv += ["--set", s]
    expect_error(capsys, argv, *needles)


def test_missing_config_file(tmp_path, capsys):
    expect_error(capsys, ["check-config", "--config", tmp_path / "nope.yaml"], "not found")


def test_good_config_checks_models(tiny_yaml, capsys):
    assert main(["check-config", "--config", tiny_yaml]) == 0
    assert "student truncated_student" in capsys.readouterr().out


# ------------------------------------------------------------- data sources

def _check_data(capsys, tmp_path, toy_npz, data, *needles):
    cfg = tiny_run_config(toy_npz)
    cfg["data"] = data
    return expect_error(capsys, ["check-config", "--config",
                                 write_config(tmp_path / "d.yaml", cfg)], *needles)


def _png_folder(root, classes=("a", "b"), n=4, size=(8, 8)):
    from PIL import Image

    for c in classes:
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full(size, 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_image_folder_corrupt_png(tmp_path, capsys, toy_npz):
    root = _png_folder(tmp_path / "imgs")
    (root / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    _check_data(capsys, tmp_path, toy_npz, {"source": "image_folder", "path": str(root)},
                "b/2.png", "cannot be read as an image", "delete or replace")


def test_image_folder_truncated_png(tmp_path, capsys, toy_npz):
    from PIL import Image

    root = _png_folder(tmp_path / "imgs")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        root / "a" / "big.png")
    data = (root / "a" / "big.png").read_bytes()
    (root / "a" / "big.png").write_bytes(data[: len(data) // 2])
    _check_data(capsys, tmp_path, toy_npz, {"source": "image_folder", "path": str(root)},
                "a/big.png", "cannot be read as an image")


def test_image_folder_empty_class(tmp_path, capsys, toy_npz):
    root = _png_folder(tmp_path / "imgs")
    os.makedirs(root / "c")
    _check_data(capsys, tmp_path, toy_npz, {"source": "image_folder", "path": str(root)},
                "class folder 'c' holds no images")


def test_image_folder_mixed_sizes(tmp_path, capsys, toy_npz):
    root = _png_folder(tmp_path / "imgs")
    _png_folder(root, classes=("b",), n=1, size=(9, 9))  # overwrites b/0.png with 9x9
    _check_data(capsys, tmp_path, toy_npz, {"source": "image_folder", "path": str(root)},
                "b/0.png", "share one size")


def test_image_folder_without_classes(tmp_path, capsys, toy_npz):
    os.makedirs(tmp_path / "flat")
    _check_data(capsys, tmp_path, toy_npz, {"source": "image_folder",
                                            "path": str(tmp_path / "flat")},
                "no class sub-folders")


def _npz(tmp_path, **arrays):
    xtr, ytr = synthetic_images(40, seed=1)
    xte, yte = synthetic_images(20, seed=2)
    base = dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
                class_names=np.array(["a", "b", "c"]))
    base.update(arrays)
    base = {k: v for k, v in base.items() if v is not None}
    path = str(tmp_path / "bad.npz")
    np.savez(path, **base)
    return path


NPZ_CASES = {
    "negative_label": (lambda y: dict(y_train=np.where(np.arange(40) == 3, -1, y)),
                       ["negative"]),
    "label_beyond_classes": (lambda y: dict(y_train=np.where(np.arange(40) == 3, 7, y)),
                             ["labels go up to 7", "3 class names"]),
    "test_size_differs": (lambda y: dict(x_test=np.zeros((20, 10, 10, 1), np.uint8)),
                          ["test images are (10, 10, 1)", "(12, 12, 1)"]),
    "float_images": (lambda y: dict(x_train=np.zeros((40, 12, 12, 1), np.float32)),
                     ["must be uint8"]),
    "missing_arrays": (lambda y: dict(x_test=None), ["missing arrays ['x_test']"]),
    "label_count_mismatch": (lambda y: dict(y_train=y[:30]), ["40 images but 30 labels"]),
    "string_labels": (lambda y: dict(y_train=np.array(["a"] * 40)), ["must be integer"]),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_npz_errors(case, tmp_path, capsys, toy_npz):
    change, needles = NPZ_CASES[case]
    _, y = synthetic_images(40, seed=1)
    path = _npz(tmp_path, **change(y))
    _check_data(capsys, tmp_path, toy_npz, {"source": "numpy", "path": path}, *needles)


def test_npz_not_an_archive(tmp_path, capsys, toy_npz):
    path = tmp_path / "notes.npz"
    path.write_text("these are not arrays\n")
    _check_data(capsys, tmp_path, toy_npz, {"source": "numpy", "path": str(path)},
                "notes.npz cannot be read as an .npz archive", "np.savez")


def test_npz_truncated(tmp_path, capsys, toy_npz):
    data = open(toy_npz, "rb").read()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: len(data) // 2])
    _check_data(capsys, tmp_path, toy_npz, {"source": "numpy", "path": str(path)},
                "cut.npz cannot be read")


def test_npy_instead_of_npz(tmp_path, capsys, toy_npz):
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    _check_data(capsys, tmp_path, toy_npz, {"source": "numpy", "path": str(path)},
                "single .npy array")


def _idx_folder(tmp_path):
    folder = tmp_path / "fm"
    x, y = synthetic_images(30, shape=(28, 28, 1), num_classes=10)
    for stem, arr in (("train-images-idx3-ubyte", x[..., 0]), ("train-labels-idx1-ubyte", y),
                      ("t10k-images-idx3-ubyte", x[:10, ..., 0]),
                      ("t10k-labels-idx1-ubyte", y[:10])):
        write_idx(str(folder / f"{stem}.gz"), arr.astype(np.uint8))
    return folder


@pytest.mark.parametrize("damage,needle", [
    ("truncate", "cannot be read as an IDX file (gzip)"),
    ("not_gzip", "cannot be read as an IDX file (gzip)"),
    ("bad_magic", "not an IDX file"),
])
def test_idx_damaged(damage, needle, tmp_path, capsys, toy_npz):
    folder = _idx_folder(tmp_path)
    target = folder / "train-images-idx3-ubyte.gz"
    raw = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(raw[: len(raw) // 2])
    elif damage == "not_gzip":
        target.write_bytes(gzip.decompress(raw))
    else:
        target.write_bytes(gzip.compress(b"\x12\x34" + gzip.decompress(raw)[2:]))
    _check_data(capsys, tmp_path, toy_npz, {"source": "fashion_mnist", "path": str(folder)},
                "train-images-idx3-ubyte.gz", needle)


def _cifar_python_archive(path, payload):
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = payload(name)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _batch(name):
    x = np.zeros((2, 3072), np.uint8)
    return pickle.dumps({b"data": x, b"labels": [0, 1]})


def test_cifar_truncated_archive(tmp_path, capsys, toy_npz):
    path = _cifar_python_archive(str(tmp_path / "c.tar.gz"), _batch)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    _check_data(capsys, tmp_path, toy_npz, {"source": "cifar10_archive", "path": path},
                "c.tar.gz cannot be read as a CIFAR-10 archive", "download it again")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickle_refused(tmp_path, capsys, toy_npz):
    path = _cifar_python_archive(str(tmp_path / "evil.tar.gz"),
                                 lambda name: pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    _check_data(capsys, tmp_path, toy_npz, {"source": "cifar10_archive", "path": path},
                "Refusing to unpickle", "system")


# -------------------------------------------------------------- model files

def _export(capsys, tiny_yaml, model, *needles):
    return expect_error(capsys, ["export", "--config", tiny_yaml, "--model", model,
                                 "--target", "phone", "--quant", "fp32"], *needles)


def test_model_missing(tmp_path, capsys, tiny_yaml):
    _export(capsys, tiny_yaml, tmp_path / "none.keras", "--model", "none.keras does not exist")


def test_model_not_keras_suffix(tmp_path, capsys, tiny_yaml):
    (tmp_path / "m.h5").write_bytes(b"\x89HDF\r\n")
    _export(capsys, tiny_yaml, tmp_path / "m.h5", "is not a .keras file", "model.save")


def test_model_is_folder(tmp_path, capsys, tiny_yaml):
    os.makedirs(tmp_path / "saved.keras")
    _export(capsys, tiny_yaml, tmp_path / "saved.keras", "is a folder")


def test_model_truncated(tmp_path, capsys, tiny_yaml, ig_run):
    data = open(os.path.join(ig_run, "teacher.keras"), "rb").read()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    _export(capsys, tiny_yaml, tmp_path / "cut.keras", "cut.keras is not a valid .keras archive")


def test_model_not_a_zip(tmp_path, capsys, tiny_yaml):
    (tmp_path / "text.keras").write_text("hello")
    _export(capsys, tiny_yaml, tmp_path / "text.keras", "not a valid .keras archive")


def test_model_unknown_custom_layer(tmp_path, capsys, tiny_yaml):
    import keras

    @keras.saving.register_keras_serializable(package="faultcase")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inp = keras.Input((12, 12, 1))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(Doubler()(inp)))
    keras.Model(inp, out).save(tmp_path / "custom.keras")
    del keras.saving.get_custom_objects()["faultcase>Doubler"]
    _export(capsys, tiny_yaml, tmp_path / "custom.keras",
            "custom.keras uses class 'Doubler', which Keras does not know",
            "register_keras_serializable")


def test_model_for_other_data(tmp_path, capsys, tiny_yaml):
    import keras

    inp = keras.Input((28, 28, 1))
    keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(inp))).save(
        tmp_path / "other.keras")
    _export(capsys, tiny_yaml, tmp_path / "other.keras", "takes (28, 28, 1) inputs",
            "(12, 12, 1) images")


# ------------------------------------------------------------------ IG store

def _verify(capsys, cfg_path, run, *needles, sets=()):
    argv = ["precompute-ig", "--config", cfg_path, "--out", run, "--verify"]
    for s in sets:
        argv += ["--set", s]
    return expect_error(capsys, argv, *needles)


def test_verify_passes_on_a_good_store(run_copy, tiny_yaml, capsys):
    assert main(["precompute-ig", "--config", tiny_yaml, "--out", run_copy, "--verify"]) == 0
    assert "IG store OK: 120 maps in 3 shards" in capsys.readouterr().out


def test_verify_catches_flipped_shard_bytes(run_copy, tiny_yaml, capsys):
    shard = os.path.join(run_copy, "ig", "shard-00001-of-00003.tfrecord.gz")
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(shard, "wb").write(bytes(data))
    before = snapshot(run_copy)
    _verify(capsys, tiny_yaml, run_copy, "shard-00001-of-00003.tfrecord.gz is corrupt",
            "delete it and its .json sidecar")
    assert snapshot(run_copy) == before


def test_verify_catches_changed_data(run_copy, tiny_yaml, capsys):
    before = snapshot(run_copy)
    _verify(capsys, tiny_yaml, run_copy, "different fingerprint", "other data",
            sets=["data.train_subset=100"])
    assert snapshot(run_copy) == before


def test_verify_catches_other_ig_settings(run_copy, tiny_yaml, capsys):
    _verify(capsys, tiny_yaml, run_copy, "different settings (settings.n_steps: 8 -> 16)",
            sets=["ig.n_steps=16"])


def test_verify_catches_other_teacher(run_copy, tiny_yaml, capsys, tmp_path):
    import shutil

    other = str(tmp_path / "other.keras")
    shutil.copy(os.path.join(run_copy, "teacher.keras"), other)
    with open(other, "ab") as f:
        f.write(b"\0")  # another file, another hash
    _verify(capsys, tiny_yaml, run_copy, "different teacher_sha256", sets=[f"teacher.path={other}"])


def test_verify_catches_missing_shard_file(run_copy, tiny_yaml, capsys):
    os.unlink(os.path.join(run_copy, "ig", "shard-00002-of-00003.tfrecord.gz"))
    _verify(capsys, tiny_yaml, run_copy, "shard-00002-of-00003.tfrecord.gz is missing")


def test_verify_catches_missing_sidecar(run_copy, tiny_yaml, capsys):
    os.unlink(os.path.join(run_copy, "ig", "shard-00000-of-00003.json"))
    _verify(capsys, tiny_yaml, run_copy, "1 of 3 shards are missing", "shard-00000-of-00003")


def test_damaged_sidecar_json(run_copy, tiny_yaml, capsys):
    side = os.path.join(run_copy, "ig", "shard-00001-of-00003.json")
    open(side, "w").write(open(side).read()[:50])
    _verify(capsys, tiny_yaml, run_copy, "shard-00001-of-00003.json is damaged", "delete it")


def test_truncated_manifest(run_copy, tiny_yaml, capsys):
    man = os.path.join(run_copy, "ig", "manifest.json")
    open(man, "w").write(open(man).read()[:40])
    before = snapshot(run_copy)
    expect_error(capsys, ["precompute-ig", "--config", tiny_yaml, "--out", run_copy],
                 "manifest.json is damaged", "delete it")
    assert snapshot(run_copy) == before
    # The fix the message gives works: the manifest is rebuilt, nothing recomputed.
    os.unlink(man)
    assert main(["precompute-ig", "--config", tiny_yaml, "--out", run_copy]) == 0
    assert "IG store OK" in capsys.readouterr().out


def test_verify_without_store(tmp_path, tiny_yaml, capsys, ig_run):
    import shutil

    run = str(tmp_path / "run")
    os.makedirs(run)
    shutil.copy(os.path.join(ig_run, "teacher.keras"), run)
    _verify(capsys, tiny_yaml, run, "holds no finished IG shards")


def test_precompute_without_teacher(tmp_path, tiny_yaml, capsys):
    expect_error(capsys, ["precompute-ig", "--config", tiny_yaml, "--out", tmp_path / "empty"],
                 "teacher.keras not found", "train-teacher")


def test_precompute_with_teacher_of_other_shape(tmp_path, tiny_yaml, capsys):
    import keras

    inp = keras.Input((28, 28, 1))
    keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp))).save(
        tmp_path / "t28.keras")
    expect_error(capsys, ["precompute-ig", "--config", tiny_yaml, "--out", tmp_path / "r",
                          "--set", f"teacher.path={tmp_path / 't28.keras'}"],
                 "takes (28, 28, 1) inputs")


def test_bad_shard_spec(tmp_path, tiny_yaml, capsys, run_copy):
    expect_error(capsys, ["precompute-ig", "--config", tiny_yaml, "--out", run_copy,
                          "--shard", "4/4"], "need 0 <= i < N")


# --------------------------------------------------------------- run folders

def test_finished_teacher_with_other_settings(run_copy, tiny_yaml, capsys):
    before = snapshot(run_copy)
    expect_error(capsys, ["train-teacher", "--config", tiny_yaml, "--out", run_copy,
                          "--set", "teacher.train.optimizer.lr=0.02"],
                 "holds a teacher trained with other settings",
                 "teacher.train.optimizer.lr: 0.01 -> 0.02")
    assert snapshot(run_copy) == before
    # Unchanged settings reuse it.
    assert main(["train-teacher", "--config", tiny_yaml, "--out", run_copy]) == 0
    assert snapshot(run_copy) == before


def test_finished_teacher_with_other_data(run_copy, tiny_yaml, capsys):
    before = snapshot(run_copy)
    expect_error(capsys, ["train-teacher", "--config", tiny_yaml, "--out", run_copy,
                          "--set", "data.seed=3"], "on other data")
    assert snapshot(run_copy) == before


def test_fresh_process_prints_only_the_error_line(tmp_path):
    """In a real shell: exit 2 and nothing on stderr but the error (no TensorFlow chatter)."""
    from tfigkd.testing import tfigkd_subprocess

    bad = _cfg(tmp_path, "name: x\ndata: {source: numpy, path: /nonexistent.npz}\n")
    result = tfigkd_subprocess("check-config", "--config", bad)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tfigkd: error: Invalid config {bad}: data.path: '/nonexistent.npz' does not exist; "
        "point it to an .npz file with x_train, y_train, x_test, y_test."]
