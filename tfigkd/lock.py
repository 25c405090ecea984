"""One writer per run folder: an advisory ``flock`` on ``DIR/.tfigkd.lock``.

Two ``tfigkd`` processes writing the same ``--out`` would do all the work
twice and could delete each other's half-written checkpoints. Every stage
that writes into a run folder holds its lock; a second process fails at once
with a message naming the process that holds it.

The operating system drops an ``flock`` when its process dies, however it
dies (``kill -9`` included), so a lock left behind by a killed run is never
"stale": the file stays, but the next process takes the lock over and says
so. The lock is re-entrant inside one process, so ``tfigkd run`` can hold it
while calling stages that take it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time

from tfigkd.errors import UserError

LOCK_FILE = ".tfigkd.lock"
log = logging.getLogger(__name__)

_held: dict[str, tuple[int, int]] = {}  # realpath -> (fd, depth) in this process
_guard = threading.Lock()


class FolderLockedError(UserError):
    """Another live process is writing the same folder."""


def _describe(info):
    if not info:
        return "another process"
    what = f"PID {info.get('pid', '?')}"
    if info.get("host") and info["host"] != socket.gethostname():
        what += f" on {info['host']}"
    if info.get("command"):
        what += f" ({info['command']}"
        what += f", since {info['since']})" if info.get("since") else ")"
    return what


def _read_info(path):
    try:
        with open(path) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def folder_lock(folder, name=LOCK_FILE, wait=False):
    """Holds the write lock of ``folder`` for the duration of the block.

    Args:
        folder: The run folder (created if missing).
        name: Lock file name inside it (e.g. one per IG worker).
        wait: Block until the holder finishes instead of failing (for
            workers that share a preparation step, e.g. ablation shards).

    Raises:
        FolderLockedError: If another live process holds it.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.realpath(os.path.join(folder, name))
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                fd, depth = _held[path]
                _held[path] = (fd, depth - 1)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if wait:
            log.info("Waiting for %s, which is writing %s ...", _describe(_read_info(path)), folder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            os.close(fd)
            raise FolderLockedError(
                f"{folder} is being written by {_describe(_read_info(path))}; wait for it to "
                "finish or stop it, or use another --out folder.") from None
    previous = _read_info(path)
    if previous.get("pid") and previous.get("pid") != os.getpid():
        log.info("Took over the lock of %s left by %s, which is no longer running.",
                 folder, _describe(previous))
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "command": " ".join(os.path.basename(a) if i == 0 else a
                                for i, a in enumerate(sys.argv))[:200],
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    with _guard:
        _held[path] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            del _held[path]
        # The file stays (removing it would race with a waiting process);
        # an empty one means "free".
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
