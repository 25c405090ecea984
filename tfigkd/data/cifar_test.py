import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from tfigkd.data import load_cifar10_archive
from tfigkd.data.cifar import safe_unpickle

N_PER_BATCH = 4


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        out[name] = (rng.integers(0, 256, (N_PER_BATCH, 3, 32, 32), dtype=np.uint8),
                     rng.integers(0, 10, N_PER_BATCH).astype(np.uint8))
    return out


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_binary_archive(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for name, (x, y) in batches.items():
            rec = np.concatenate([y[:, None], x.reshape(len(y), -1)], axis=1)
            _add(tar, f"cifar-10-batches-bin/{name}.bin", rec.astype(np.uint8).tobytes())
        _add(tar, "cifar-10-batches-bin/batches.meta.txt",
             b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n")


def _write_python_archive(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for name, (x, y) in batches.items():
            d = {b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                 b"data": x.reshape(len(y), -1), b"filenames": [b"f.png"] * len(y)}
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(d, protocol=2))


def _check(result, batches):
    xtr, ytr, xte, yte, classes = result
    assert xtr.shape == (5 * N_PER_BATCH, 32, 32, 3) and xtr.dtype == np.uint8
    assert xte.shape == (N_PER_BATCH, 32, 32, 3)
    # CHW planes -> HWC: pixel (r, c) of channel k is x[k, r, c].
    x1, y1 = batches["data_batch_1"]
    np.testing.assert_array_equal(xtr[:N_PER_BATCH], x1.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(ytr[:N_PER_BATCH], y1)
    x5, _ = batches["data_batch_5"]
    np.testing.assert_array_equal(xtr[-N_PER_BATCH:], x5.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(yte, batches["test_batch"][1])
    assert classes[0] == "airplane" and len(classes) == 10


def test_binary_archive(tmp_path):
    batches = _batches()
    path = str(tmp_path / "cifar-10-binary.tar.gz")
    _write_binary_archive(path, batches)
    _check(load_cifar10_archive(path), batches)


def test_binary_extracted_folder(tmp_path):
    batches = _batches(1)
    path = str(tmp_path / "cifar-10-binary.tar.gz")
    _write_binary_archive(path, batches)
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    _check(load_cifar10_archive(str(tmp_path / "x")), batches)


def test_python_archive(tmp_path):
    batches = _batches(2)
    path = str(tmp_path / "cifar-10-python.tar.gz")
    _write_python_archive(path, batches)
    _check(load_cifar10_archive(path), batches)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="Refusing to unpickle"):
        safe_unpickle(pickle.dumps({b"data": _Evil()}))
    # Plain data and arrays are fine.
    out = safe_unpickle(pickle.dumps({b"a": [1, 2.5, "s", b"b"], b"x": np.arange(3)}))
    np.testing.assert_array_equal(out[b"x"], np.arange(3))


def test_corrupt_and_wrong_archives(tmp_path):
    path = str(tmp_path / "c.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for i in range(1, 6):
            _add(tar, f"d/data_batch_{i}.bin", b"\x00" * 3073)
        _add(tar, "d/test_batch.bin", b"\x00" * 100)
    with pytest.raises(ValueError, match="corrupt"):
        load_cifar10_archive(path)
    with tarfile.open(str(tmp_path / "e.tar.gz"), "w:gz") as tar:
        _add(tar, "train", b"x")
    with pytest.raises(ValueError, match="no CIFAR-10 batches"):
        load_cifar10_archive(str(tmp_path / "e.tar.gz"))
    with pytest.raises(FileNotFoundError, match="cifar-10-binary"):
        load_cifar10_archive(str(tmp_path / "missing.tar.gz"))


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    from tfigkd.data import load_cifar10_tfds

    with tfds.testing.mock_data(num_examples=12):
        xtr, ytr, xte, yte, classes = load_cifar10_tfds()
    assert xtr.shape == (12, 32, 32, 3) and xtr.dtype == np.uint8
    assert ytr.dtype == np.int64 and classes[0] == "airplane"
