"""Reader for the IDX format of MNIST / Fashion-MNIST (optionally gzipped)."""

from __future__ import annotations

import gzip
import os

import numpy as np

from tfigkd.data.reading import reading
from tfigkd.errors import UserError

# IDX type codes -> big-endian NumPy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (``.gz`` or raw) into a NumPy array.

    Args:
        path: File path.

    Returns:
        The array, in native byte order, with the shape the header declares.

    Raises:
        ValueError: If the header is malformed or the payload has the wrong size.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with reading(path, "an IDX file" + (" (gzip)" if path.endswith(".gz") else ""),
                 "the file is truncated or damaged: reinstall or download it again"):
        with opener(path, "rb") as f:
            raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number "
                        f"{raw[:4].hex()}); expected e.g. 00000803 for images.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(f"{path}: payload is {len(raw) - header} bytes but the "
                        f"header declares shape {shape} ({expected} bytes); "
                        "the file is truncated or corrupt.")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes ``array`` as IDX (gzipped if ``path`` ends in .gz). For fixtures."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    arr = np.asarray(array)
    code = codes.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise UserError(f"dtype {arr.dtype} cannot be stored as IDX.")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape)
    payload = header + arr.astype(_IDX_DTYPES[code]).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with opener(path, "wb") as f:
        f.write(payload)
