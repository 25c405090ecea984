"""TensorFlow Lite for Microcontrollers: run a model, size its arena, emit a C array."""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np

from tfigkd.errors import UserError
from tfigkd.io import atomic_path


class MicroError(UserError, RuntimeError):
    """TFLM could not load or run the model."""


def _interpreter(model_bytes, arena_size):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model_bytes, arena_size=int(arena_size))


# Probes run in a child process: TFLite Micro (tflite-micro 0.dev, seen here)
# crashes with SIGSEGV for some arena sizes just below what a model needs,
# instead of failing the allocation; a crashed probe must not take tfigkd down.
# The child bisects [lo, hi] and reports each probe as it goes, so a crash
# costs one restart, not one process per probe.
_BISECT = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
sample = np.load(sys.argv[5]) if len(sys.argv) > 5 else None
lo, hi, step = (int(v) for v in sys.argv[2:5])
def fits(size):
    try:
        it = runtime.Interpreter.from_bytes(data, arena_size=size)
        if sample is not None:
            it.set_input(sample, 0)
            it.invoke()
        return True
    except RuntimeError as e:
        msg = str(e)
        if "allocate" in msg.lower() or "arena" in msg.lower():
            return False
        sys.stderr.write(msg)
        sys.exit(3)
def probe(size):
    print("probe", size, flush=True)
    ok = fits(size)
    print("fits" if ok else "small", size, flush=True)
    return ok
if lo == hi:  # a single probe
    probe(hi)
    sys.exit(0)
while hi - lo > step:
    mid = (lo + hi) // 2 // step * step
    if probe(mid):
        hi = mid
    else:
        lo = mid
"""


def _bisect(model_path, sample_path, lo, hi, step):
    """Runs ``_BISECT`` to the end, restarting it after a crash.

    Returns:
        (lo, hi, results): the final bounds and ``{size: fits}`` of every probe.
    """
    import subprocess
    import sys

    results = {}
    while True:
        args = [sys.executable, "-c", _BISECT, model_path, str(lo), str(hi), str(step)]
        if sample_path:
            args.append(sample_path)
        proc = subprocess.run(args, capture_output=True, text=True)
        pending = None
        for line in proc.stdout.splitlines():
            word, size = line.split()
            size = int(size)
            if word == "probe":
                pending = size
                continue
            results[size], pending = word == "fits", None
            if word == "fits":
                hi = size
            else:
                lo = size
        if proc.returncode == 3:
            raise MicroError(_explain(RuntimeError(proc.stderr)))
        if proc.returncode == 0:
            return lo, hi, results
        if pending is None:  # died before any probe: not a TFLM allocation crash
            raise MicroError(f"TFLite Micro's probe process failed (exit {proc.returncode}): "
                             f"{proc.stderr.strip()[-300:]}")
        # Crashed while allocating `pending` bytes: that size is too small.
        results[pending] = False
        if lo == hi:  # a single probe
            return lo, hi, results
        lo = pending


@contextlib.contextmanager
def _probe_files(model_bytes, sample):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tfigkd-tflm-") as tmp:
        model_path = os.path.join(tmp, "model.tflite")
        with open(model_path, "wb") as f:
            f.write(model_bytes)
        sample_path = None
        if sample is not None:
            sample_path = os.path.join(tmp, "sample.npy")
            np.save(sample_path, np.asarray(sample))
        yield model_path, sample_path


def _fits(model_path, sample_path, size):
    return _bisect(model_path, sample_path, size, size, 1)[2][size]


def fits_arena(model_bytes, arena_size, sample=None):
    """True when TFLM allocates (and, with ``sample``, runs) the model in ``arena_size`` bytes.

    The probe runs in a child process (see ``_BISECT``).
    """
    with _probe_files(model_bytes, sample) as (model_path, sample_path):
        return _fits(model_path, sample_path, int(arena_size))


def _explain(err):
    msg = str(err)
    m = re.search(r"(?:Didn't find op for builtin opcode|unsupported op)[^\n]*", msg, re.I)
    hint = (" An op of this model is not in TFLite Micro's kernels: check the export's op "
            "list against tflite/mcu.yaml and replace that layer.") if m else ""
    return f"TFLite Micro failed: {msg.strip()}{hint}"


def smallest_arena(model_bytes, sample=None, lo=1024, hi=16 << 20, granularity=1024):
    """The smallest tensor arena (bytes, rounded up to ``granularity``) that works.

    Bisects between ``lo`` and ``hi``; each probe builds a TFLM interpreter
    and, if ``sample`` is given, runs one inference (some kernels allocate
    scratch buffers at the first invoke).

    Raises:
        MicroError: If even ``hi`` bytes are not enough, or TFLM rejects the model.
    """
    with _probe_files(model_bytes, sample) as (model_path, sample_path):
        if not _fits(model_path, sample_path, hi):
            raise MicroError(f"TFLite Micro cannot run the model even with a {hi:,}-byte arena.")
        lo = max(granularity, lo // granularity * granularity)
        _, hi, _ = _bisect(model_path, sample_path, lo, hi, granularity)
    return hi


def micro_predict(model_bytes, inputs, arena_size):
    """Runs a full-int8 model in TFLM one image at a time; returns the raw outputs."""
    it = _interpreter(model_bytes, arena_size)
    outs = []
    for x in inputs:
        it.set_input(x[None], 0)
        it.invoke()
        outs.append(np.array(it.get_output(0))[0])
    return np.stack(outs)


def write_c_array(model_bytes, out_dir, name="g_model", arena_size=None):
    """Writes ``{name}.h`` and ``{name}.cc`` holding the model for a TFLM project.

    The array is ``alignas(16)`` (TFLM reads the flatbuffer in place) and the
    header declares its length and, if known, the tensor arena size.

    Returns:
        (header path, source path).
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UserError(f"{name!r} is not a valid C identifier.")
    guard = f"TFIGKD_{name.upper()}_H_"
    header = [f"#ifndef {guard}", f"#define {guard}", "", "#include <cstddef>", "",
              f"// Generated by tfigkd: a TFLite flatbuffer ({len(model_bytes)} bytes).",
              f"extern const unsigned char {name}[];",
              f"extern const unsigned int {name}_len;"]
    if arena_size:
        header.append("// Smallest tensor arena measured with tflite-micro; add headroom.")
        header.append(f"constexpr size_t {name}_arena_size = {int(arena_size)};")
    header += ["", f"#endif  // {guard}", ""]
    rows = []
    for start in range(0, len(model_bytes), 12):
        chunk = model_bytes[start:start + 12]
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    source = [f'#include "{name}.h"', "", "// Flatbuffers are read in place: keep 16-byte alignment.",
              f"alignas(16) const unsigned char {name}[] = {{", *rows, "};",
              f"const unsigned int {name}_len = {len(model_bytes)};", ""]
    h_path, c_path = os.path.join(out_dir, f"{name}.h"), os.path.join(out_dir, f"{name}.cc")
    for path, lines in ((h_path, header), (c_path, source)):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("\n".join(lines))
    return h_path, c_path


def read_c_array(source_path):
    """Parses a source written by ``write_c_array`` back into bytes (for checking)."""
    text = open(source_path).read()
    body = text[text.index("{") + 1:text.index("};")]
    data = bytes(int(tok, 16) for tok in re.findall(r"0x([0-9a-fA-F]{2})", body))
    m = re.search(r"_len = (\d+);", text)
    if not m or int(m.group(1)) != len(data):
        raise UserError(f"{source_path}: array length does not match its _len.")
    return data
