"""Arrays read from (and written to) ``.npy`` files on demand, for data larger than memory.

``LazyRows`` stands in for an (N, ...) array whose rows live in a ``.npy``
file (the image cache, or the IG maps joined to a streamed split): ``take``
selects rows without reading them, indexing reads just the rows asked for.
Reads use ``pread`` rather than a memory map, so the pages land in the
kernel's page cache and not in the process's resident set: a pipeline that
streams an epoch holds only its batches in memory. ``NpyRowWriter`` is the
other direction: it fills a ``.npy`` file row by row with ``pwrite``, so
writing a file larger than memory never holds more than the rows in hand
(a writable memory map would keep every dirty page resident until the
kernel writes it back).

``tfigkd.data.make_dataset`` reads batches of a ``LazyRows`` split in the
same order and with the same augmentation as the in-memory array, so a
streamed run trains the same weights and computes the same IG maps.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

log = logging.getLogger(__name__)


_FD_LOCK = threading.Lock()
# One pread/pwrite call moves at most this much (Linux caps a call near 2 GiB).
_IO_CHUNK = 1 << 30


def _pread_all(fd, size, offset, path):
    """``size`` bytes at ``offset``, in calls of at most ``_IO_CHUNK``; short only at end of file."""
    parts, done = [], 0
    while done < size:
        part = os.pread(fd, min(size - done, _IO_CHUNK), offset + done)
        if not part:
            raise OSError(f"{path}: the file ends {size - done} bytes early (truncated); delete it "
                          "(or its cache folder) and rerun.")
        parts.append(part)
        done += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _pwrite_all(fd, data, offset):
    """Writes all of ``data`` at ``offset`` (pwrite may write less than asked)."""
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view[:_IO_CHUNK], offset)
        view, offset = view[n:], offset + n


def memory_budget_bytes(budget_mb=None):
    """``data.memory_budget_mb`` in bytes; None: a quarter of the machine's RAM."""
    if budget_mb is not None:
        return int(budget_mb * 1e6)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8e9
    return int(ram // 4)


class LazyRows:
    """Rows ``rows`` of an array stored in an ``.npy`` file, read on demand.

    Args:
        path: The ``.npy`` file.
        offset: Byte offset of the data (after the header).
        shape: The stored array's full shape.
        rows: Which stored rows this view holds, in order (None: all).
        dtype: The stored dtype (C order, no object dtype).
    """

    def __init__(self, path, offset, shape, rows=None, dtype=np.uint8):
        self.path, self.offset, self.full_shape = path, int(offset), tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.rows = (np.arange(self.full_shape[0], dtype=np.int64) if rows is None
                     else np.asarray(rows, np.int64))
        self.row_bytes = int(np.prod(self.full_shape[1:])) * self.dtype.itemsize
        self._fd = None

    @property
    def ndim(self):
        return len(self.full_shape)

    @classmethod
    def from_memmap(cls, m):
        """Wraps an ``np.load(..., mmap_mode="r")`` array (its file and data offset)."""
        return cls(m.filename, m.offset, m.shape, dtype=m.dtype)

    @classmethod
    def open(cls, path):
        """The whole array in ``path`` (an ``.npy`` file), unread."""
        m = np.load(path, mmap_mode="r")
        try:
            return cls.from_memmap(m)
        finally:
            del m

    @property
    def shape(self):
        return (len(self.rows), *self.full_shape[1:])

    @property
    def nbytes(self):
        return len(self.rows) * self.row_bytes

    def __len__(self):
        return len(self.rows)

    def take(self, positions):
        """The rows at ``positions`` (of this view), still unread."""
        return LazyRows(self.path, self.offset, self.full_shape, self.rows[positions], self.dtype)

    def read(self, positions):
        """The rows at ``positions`` as an array, in that order."""
        src = self.rows[np.asarray(positions, np.int64)]
        out = np.empty((len(src), *self.full_shape[1:]), self.dtype)
        if not len(src):
            return out
        fd = self._open()
        order = np.argsort(src, kind="stable")
        flat = out.reshape(len(src), -1)  # a view: filling it fills ``out``
        # One pread per run of consecutive stored rows.
        start = 0
        s = src[order]
        breaks = np.flatnonzero(np.diff(s) != 1) + 1
        for end in list(breaks) + [len(s)]:
            first, count = int(s[start]), end - start
            buf = _pread_all(fd, count * self.row_bytes, self.offset + first * self.row_bytes,
                             self.path)
            flat[order[start:end]] = np.frombuffer(buf, self.dtype).reshape(count, -1)
            start = end
        return out

    def _open(self):
        # Under a lock: tf.data may call ``read`` from several threads at once.
        with _FD_LOCK:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            return self._fd

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.read([key])[0]
        if isinstance(key, tuple):  # e.g. x[:, ..., 0]: read the rows, then index
            return self[key[0]][(slice(None), *key[1:])]
        return self.read(np.arange(len(self))[key])

    def __array__(self, dtype=None, copy=None):
        arr = self.read(np.arange(len(self)))
        return arr if dtype is None else arr.astype(dtype)

    def chunks(self, size=None):
        """Consecutive (positions, rows) blocks of at most ``size`` rows (default: ~16 MB)."""
        size = size or max(1, (16 << 20) // self.row_bytes)
        for s in range(0, len(self), size):
            pos = np.arange(s, min(s + size, len(self)))
            yield pos, self.read(pos)

    def __del__(self):
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_fd"} | {"_fd": None}


def is_lazy(x):
    """True for arrays read on demand (``LazyRows``)."""
    return isinstance(x, LazyRows)


def select_rows(x, positions):
    """``x[positions]``, except that rows streamed from disk are selected, not read."""
    return x.take(positions) if is_lazy(x) else x[positions]


class NpyRowWriter:
    """Writes an (N, ...) ``.npy`` file row by row, in any order, from any thread.

    The header is written first and the file is sized to hold every row;
    ``write`` puts rows at their positions with ``pwrite`` (thread-safe, no
    shared file offset). Use it inside ``tfigkd.io.atomic_path`` so a file is
    only ever seen complete.
    """

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = path, tuple(int(v) for v in shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": self.shape}
        with open(path, "wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            self.offset = f.tell()
            f.truncate(self.offset + self.shape[0] * self.row_bytes)
        self._fd = os.open(path, os.O_WRONLY)

    def write(self, first, rows):
        """Writes consecutive ``rows`` starting at row ``first``."""
        rows = np.ascontiguousarray(rows, self.dtype)
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(f"rows of shape {rows.shape[1:]} for a file of {self.shape[1:]}")
        _pwrite_all(self._fd, rows.tobytes(), self.offset + int(first) * self.row_bytes)

    def close(self):
        """Flushes to disk and closes the file."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
