"""Coral Edge TPU: run ``edgetpu_compiler`` when it is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess


def compile_edgetpu(tflite_path, out_dir, timeout=600):
    """Compiles a full-int8 model for the Edge TPU if ``edgetpu_compiler`` is on the PATH.

    Returns:
        A dict: ``ran`` (bool), ``message``, and when it ran the compiler's
        ``returncode``, ``output_path``, ``log`` and the counts of ops mapped
        to the TPU and left on the CPU when the log states them.
    """
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        return {"ran": False, "message": (
            "edgetpu_compiler is not on the PATH, so the model was NOT compiled for the Edge "
            "TPU; only the static op check ran. Install it on an x86-64 Debian/Ubuntu host "
            "(package edgetpu-compiler from packages.cloud.google.com) and run: "
            f"edgetpu_compiler -o {out_dir} {tflite_path}")}
    proc = subprocess.run([exe, "-s", "-o", out_dir, tflite_path], capture_output=True,
                          text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    stem = os.path.splitext(os.path.basename(tflite_path))[0]
    result = {"ran": True, "returncode": proc.returncode, "log": log[-4000:],
              "output_path": os.path.join(out_dir, f"{stem}_edgetpu.tflite")}
    tpu = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", log)
    cpu = re.search(r"Number of operations that will run on CPU:\s*(\d+)", log)
    if tpu:
        result["ops_on_tpu"] = int(tpu.group(1))
    if cpu:
        result["ops_on_cpu"] = int(cpu.group(1))
    result["message"] = ("compiled" if proc.returncode == 0 else
                         f"edgetpu_compiler failed (exit {proc.returncode}); see log")
    return result
