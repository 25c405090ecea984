"""Where a measured figure was taken (written beside every benchmark result)."""

from __future__ import annotations

import os
import platform
import time


def machine_info():
    """Where a figure was measured: platform, cores, TensorFlow version, date."""
    import tensorflow as tf

    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M")}
