"""Images read from the disk cache on demand, for data larger than the memory budget.

``LazyRows`` stands in for a uint8 (N, H, W, C) array whose rows live in a
``.npy`` file (the image-folder cache): ``take`` selects rows without
reading them, indexing reads just the rows asked for. Reads use ``pread``
rather than a memory map, so the pages land in the kernel's page cache and
not in the process's resident set: a pipeline that streams an epoch holds
only its batches in memory.

``tfigkd.data.make_dataset`` reads batches of a ``LazyRows`` split in the
same order and with the same augmentation as the in-memory array, so a
streamed run trains the same weights and computes the same IG maps.
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)


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
    """Rows ``rows`` of a uint8 array stored in an ``.npy`` file, read on demand."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, path, offset, shape, rows=None):
        self.path, self.offset, self.full_shape = path, int(offset), tuple(int(v) for v in shape)
        self.rows = (np.arange(self.full_shape[0], dtype=np.int64) if rows is None
                     else np.asarray(rows, np.int64))
        self.row_bytes = int(np.prod(self.full_shape[1:]))
        self._fd = None

    @classmethod
    def from_memmap(cls, m):
        """Wraps an ``np.load(..., mmap_mode="r")`` array (its file and data offset)."""
        return cls(m.filename, m.offset, m.shape)

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
        return LazyRows(self.path, self.offset, self.full_shape, self.rows[positions])

    def read(self, positions):
        """The rows at ``positions`` as a uint8 array, in that order."""
        src = self.rows[np.asarray(positions, np.int64)]
        out = np.empty((len(src), *self.full_shape[1:]), np.uint8)
        if not len(src):
            return out
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        order = np.argsort(src, kind="stable")
        flat = out.reshape(len(src), -1)
        # One pread per run of consecutive stored rows.
        start = 0
        s = src[order]
        breaks = np.flatnonzero(np.diff(s) != 1) + 1
        for end in list(breaks) + [len(s)]:
            first, count = int(s[start]), end - start
            buf = os.pread(self._fd, count * self.row_bytes, self.offset + first * self.row_bytes)
            if len(buf) != count * self.row_bytes:
                raise OSError(f"{self.path}: short read (the image cache was truncated); "
                              "delete the cache folder and rerun.")
            flat[order[start:end]] = np.frombuffer(buf, np.uint8).reshape(count, -1)
            start = end
        return out

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
    return isinstance(x, LazyRows)
