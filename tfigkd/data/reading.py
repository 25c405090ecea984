"""One translation of "this data file cannot be read" into a user-facing error.

Decoders fail in many dialects (``EOFError`` from a truncated gzip,
``BadGzipFile``, ``zlib.error``, ``tarfile.ReadError``, ``BadZipFile``, a
refused pickle, PIL's ``UnidentifiedImageError``, NumPy's ``ValueError``).
Every data source reads its files inside ``reading(...)``, so all of them
end as one line that names the file, what it should have been and the fix.
"""

from __future__ import annotations

import contextlib
import pickle
import tarfile
import zipfile
import zlib

from tfigkd.errors import UserError

_READ_ERRORS = (EOFError, OSError, ValueError, zlib.error, tarfile.TarError, zipfile.BadZipFile,
                pickle.UnpicklingError, SyntaxError, IndexError)


@contextlib.contextmanager
def reading(path, what, fix):
    """Turns a decoder's error inside the block into ``UserError``.

    Args:
        path: The file being read (named in the message).
        what: What it should be, e.g. "a gzipped IDX file".
        fix: What the user can do, e.g. "download it again".
    """
    try:
        yield
    except (UserError, FileNotFoundError):
        raise
    except _READ_ERRORS as e:
        reason = " ".join(str(e).split())[:160] or "no details"
        raise UserError(f"{path} cannot be read as {what} ({type(e).__name__}: {reason}); "
                        f"{fix}.") from None
