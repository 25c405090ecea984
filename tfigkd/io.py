"""Atomic file writes: a killed job leaves either the old file or the new one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

from tfigkd.faults import fault_point


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path in the same folder; renames it to ``path`` on success.

    The temporary name keeps ``path``'s suffix (Keras insists on ``.keras``
    and ``.weights.h5``). On an exception the temporary file is removed and
    ``path`` is untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    suffix = base[base.index("."):] if "." in base else ""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    os.unlink(tmp)  # some writers (h5py, zip) refuse to overwrite
    try:
        yield tmp
        fault_point("atomic:before_replace")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str, data) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")


def read_json(path: str):
    """Reads a JSON file that tfigkd wrote.

    Raises:
        UserError: If the file is damaged (truncated, edited, not JSON); the
            message names it. A missing file raises ``FileNotFoundError``.
    """
    from tfigkd.errors import UserError

    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); delete it and "
                        "re-run the command that wrote it (finished work beside it is kept).") from None


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def file_sha256(path: str, chunk=1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
