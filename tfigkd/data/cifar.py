"""CIFAR-10 from the official archives (binary or Python) and from tfds."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np

from tfigkd.data.reading import reading
from tfigkd.errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck"]
_RECORD = 1 + 32 * 32 * 3
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_TEST = "test_batch"


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only NumPy arrays (plus builtin containers).

    Plain pickle runs arbitrary code on load; a downloaded archive must not
    be able to do that. CIFAR's batches hold dicts of bytes, lists, ints and
    one uint8 ndarray, so these globals are all that is ever needed.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"Refusing to unpickle {module}.{name}: CIFAR batches contain only "
            "plain containers, bytes, str, numbers and NumPy arrays. The archive "
            "is not an official CIFAR-10 archive (or has been tampered with).")


def safe_unpickle(data: bytes):
    """Loads a pickle that may contain only plain data and NumPy arrays."""
    return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()


def _parse_binary(raw: bytes, name: str):
    if len(raw) % _RECORD:
        raise UserError(f"{name}: size {len(raw)} is not a multiple of the "
                        f"CIFAR-10 record size {_RECORD}; the file is corrupt.")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, _RECORD)
    x = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), rec[:, 0].astype(np.int64)


def _parse_python(raw: bytes, name: str):
    d = safe_unpickle(raw)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise UserError(f"{name}: not a CIFAR-10 Python batch (no data/labels).")
    x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(d[b"labels"], np.int64)


class _Members:
    """Uniform read access to a .tar.gz or an extracted folder."""

    def __init__(self, path):
        self.path = path
        if os.path.isdir(path):
            self.names = {}
            for root, _, files in os.walk(path):
                for fn in files:
                    self.names[fn] = os.path.join(root, fn)
            self._tar = None
        else:
            self._tar = tarfile.open(path, "r:*")
            self.names = {os.path.basename(m.name): m for m in self._tar.getmembers()
                          if m.isfile()}

    def read(self, name):
        ref = self.names[name]
        if self._tar is None:
            with open(ref, "rb") as f:
                return f.read()
        return self._tar.extractfile(ref).read()

    def close(self):
        if self._tar is not None:
            self._tar.close()


def load_cifar10_archive(path: str):
    """Loads CIFAR-10 from a local copy of the official archive.

    Accepts ``cifar-10-binary.tar.gz`` (preferred: no pickle at all),
    ``cifar-10-python.tar.gz`` (read with a restricted unpickler), or either
    one's extracted folder.

    Args:
        path: Archive file or folder.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)`` with uint8 NHWC images.

    Raises:
        FileNotFoundError: If the path does not exist.
        ValueError: If the archive lacks the expected batches or is corrupt.
    """
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"CIFAR-10 archive {path!r} not found. Download cifar-10-binary.tar.gz "
            "from https://www.cs.toronto.edu/~kriz/cifar.html and set data.path.")
    with reading(path, "a CIFAR-10 archive (.tar.gz or extracted folder)",
                 "it is truncated, damaged or not the official archive: download it again"):
        return _load_archive(path)


def _load_archive(path):
    members = _Members(path)
    try:
        if all(f"{n}.bin" in members.names for n in _TRAIN + [_TEST]):
            parse, suffix = _parse_binary, ".bin"
        elif all(n in members.names for n in _TRAIN + [_TEST]):
            parse, suffix = _parse_python, ""
        else:
            raise UserError(
                f"{path}: no CIFAR-10 batches found (need data_batch_1..5 and "
                "test_batch, as .bin or Python pickles). Is this the CIFAR-10 "
                "(not CIFAR-100) archive?")
        parts = [parse(members.read(n + suffix), n) for n in _TRAIN]
        x_test, y_test = parse(members.read(_TEST + suffix), _TEST)
        classes = CIFAR10_CLASSES
        if "batches.meta.txt" in members.names:
            names = members.read("batches.meta.txt").decode().split()
            if len(names) == 10:
                classes = names
    finally:
        members.close()
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return x_train, y_train, x_test, y_test, list(classes)


def load_cifar10_tfds(data_dir=None, download=False):
    """Loads CIFAR-10 through tensorflow-datasets.

    Args:
        data_dir: tfds data directory (None: tfds' default).
        download: Whether tfds may download and prepare the data. Off by
            default: without a network, tfds retries for minutes before failing.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``.
    """
    import tensorflow_datasets as tfds

    try:
        (train, test), info = tfds.load(
            "cifar10", split=["train", "test"], data_dir=data_dir,
            download=download, as_supervised=True, with_info=True)
    except Exception as e:  # tfds raises several types for "not prepared"
        raise RuntimeError(
            f"tfds could not load cifar10 from data_dir={data_dir!r} "
            f"(download={download}): {e}. Prepare it once with "
            "data.download: true on a machine with internet, or use "
            "source: cifar10_archive with a local archive.") from e
    # batch_size=-1 would be shorter but aborts the process on tfds' mock data.
    def to_numpy(ds):
        xs, ys = zip(*tfds.as_numpy(ds.batch(4096)))
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = to_numpy(train)
    x_test, y_test = to_numpy(test)
    names = info.features["label"].names
    if names == [str(i) for i in range(len(names))]:
        names = CIFAR10_CLASSES  # tfds metadata not prepared (e.g. mock data)
    return (x_train.astype(np.uint8), y_train.astype(np.int64),
            x_test.astype(np.uint8), y_test.astype(np.int64), list(names))
