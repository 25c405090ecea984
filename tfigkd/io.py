"""Atomic file writes: a killed job leaves either the old file or the new one."""

from __future__ import annotations

import contextlib
import glob
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
    # The writer's PID in the name tells ``remove_stale_temps`` whose it is.
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(fd)
    os.unlink(tmp)  # some writers (h5py, zip) refuse to overwrite
    try:
        yield tmp
        fault_point("atomic:before_replace")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(folder: str) -> int:
    """Deletes the ``atomic_path`` temporaries in ``folder`` whose writer is dead.

    A process killed mid-write leaves its temporary behind; it is never read
    (the rename never happened), only tidied here. Temporaries of live
    processes (e.g. another IG worker sharing the folder) are left alone.

    Returns:
        How many files were removed.
    """
    removed = 0
    for tmp in glob.glob(os.path.join(folder, ".tmp-*")):
        pid = os.path.basename(tmp).split("-")[1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        try:
            os.unlink(tmp)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def write_json(path: str, data) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")


def write_text(path: str, text: str) -> None:
    """Writes a text file (a report) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


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
