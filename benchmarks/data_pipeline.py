"""Image-folder benchmark: cold decode throughput (1 and 2 threads), warm start, streaming RSS.

A synthetic folder of JPEG and PNG files of mixed sizes (64-200 px) and
colour modes is decoded to ``--size`` RGB through ``tfigkd.data.load_splits``
(``data.image_size``, ``resize: crop``) into a fresh cache, once per worker
count. Then, in a fresh Python process, the same config is loaded again from
the warm cache and the first training batch is taken; the script reports the
time from the start of ``load_splits`` to that batch (the goal: < 5 s) and
the whole process's wall time including Python and TensorFlow imports.

    python benchmarks/data_pipeline.py --images 3000 --out benchmarks/results/data_pipeline.json

Streaming: the same folder decoded at ``--stream-size`` (at least 3x
``--budget-mb``) is loaded with ``data.memory_budget_mb: --budget-mb`` in a
fresh process, which then runs one training epoch of batches through
``make_dataset``; a thread samples the process's resident set (VmRSS) every
10 ms. TensorFlow alone takes several hundred MB, so the figure held
against the budget is the peak growth over the resident set measured just
before streaming began (after the imports, ``load_splits`` and building the
pipeline); the absolute peak is reported too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_result  # noqa: E402

WARM = r"""
import os, resource, sys, time, json
t0 = time.perf_counter()
from tfigkd.config import config_from_dict
from tfigkd.data import load_splits, make_dataset
t_import = time.perf_counter() - t0
cfg = config_from_dict(json.loads(sys.argv[1]))
t1 = time.perf_counter()
splits = load_splits(cfg.data)
t_load = time.perf_counter() - t1
ds = make_dataset(splits.train, batch_size=64, training=True, input_norm="unit", seed=0)
x, y = next(iter(ds))
t_first = time.perf_counter() - t1
print(json.dumps({"import_s": t_import, "load_splits_s": t_load, "first_batch_s": t_first,
                  "batch_shape": list(x.shape),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


STREAM = r"""
import json, os, sys, threading, time
from tfigkd.config import config_from_dict
from tfigkd.data import load_splits, make_dataset

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

cfg = config_from_dict(json.loads(sys.argv[1]))
t = time.perf_counter()
splits = load_splits(cfg.data)
load_s = time.perf_counter() - t
ds = make_dataset(splits.train, batch_size=64, training=True, input_norm="unit", seed=0,
                  crop_pad=4, flip=True, num_epochs=2)
base = rss_mb()
peak = [base]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.01)
th = threading.Thread(target=sample, daemon=True)
th.start()
t = time.perf_counter()
n = 0
after_first = None
for x, y in ds:
    n += int(x.shape[0])
    if after_first is None:
        after_first = rss_mb()  # one-time costs done: traced functions, allocator pools
        peak_first = peak[0]
        peak[0] = after_first
epoch_s = time.perf_counter() - t
stop.set(); th.join()
print(json.dumps({"streamed": type(splits.train.x).__name__ == "LazyRows",
                  "train_bytes_mb": splits.train.x.nbytes / 1e6, "images": n,
                  "load_splits_s": load_s, "epoch_s": epoch_s, "rss_before_mb": base,
                  "peak_rss_mb": max(peak[0], peak_first), "peak_growth_mb": max(peak[0], peak_first) - base,
                  "rss_after_first_batch_mb": after_first,
                  "steady_peak_growth_mb": peak[0] - after_first}))
"""


def make_folder(root, n, seed=0):
    """n images in 4 classes: JPEG/PNG, 64-200 px, RGB/L/P/RGBA."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    modes = ["RGB", "L", "P", "RGBA"]
    for i in range(n):
        c = f"class{i % 4}"
        os.makedirs(os.path.join(root, c), exist_ok=True)
        h, w = (int(v) for v in rng.integers(64, 200, 2))
        # Smooth content (compresses like photos) plus noise.
        yy, xx = np.mgrid[0:h, 0:w]
        base = (127 + 100 * np.sin(xx / (5 + i % 7) + i) * np.cos(yy / 9)).astype(np.float32)
        img = np.stack([base, base[::-1], base[:, ::-1]], -1) + rng.normal(0, 8, (h, w, 3))
        im = Image.fromarray(img.clip(0, 255).astype(np.uint8)).convert(modes[i % 4])
        if i % 2 and im.mode in ("RGB", "L"):
            im.save(os.path.join(root, c, f"{i}.jpg"), quality=90)
        else:
            im.save(os.path.join(root, c, f"{i}.png"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--stream-size", type=int, default=160)
    p.add_argument("--budget-mb", type=float, default=64)
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", default="benchmarks/results/data_pipeline.json")
    args = p.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfigkd.config import config_from_dict
    from tfigkd.data import load_splits
    from tfigkd.experiments.common import machine_info

    work = args.workdir or tempfile.mkdtemp(prefix="tfigkd-bench-data-")
    folder = os.path.join(work, "images")
    if not os.path.isdir(folder):
        t = time.perf_counter()
        make_folder(folder, args.images)
        print(f"made {args.images} images in {time.perf_counter() - t:.1f} s")
    data = {"source": "image_folder", "path": folder, "image_size": [args.size, args.size],
            "resize": "crop", "color": "rgb", "val_fraction": 0.1}
    cold = {}
    for workers in (1, 2):
        cache = os.path.join(work, f"cache-{workers}")
        shutil.rmtree(cache, ignore_errors=True)
        cfg = config_from_dict({"data": dict(data, cache_dir=cache, workers=workers)})
        t = time.perf_counter()
        load_splits(cfg.data)
        sec = time.perf_counter() - t
        cold[workers] = {"seconds": sec, "images_per_s": args.images / sec}
        print(f"cold load, {workers} thread(s): {sec:.2f} s, {args.images / sec:.0f} img/s")
    import json

    warm_data = dict(data, cache_dir=os.path.join(work, "cache-2"), workers=2)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", WARM, json.dumps({"data": warm_data})],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    warm = json.loads(res.stdout.strip().splitlines()[-1])
    warm["process_wall_s"] = time.perf_counter() - t
    print(f"warm start: first batch {warm['first_batch_s']:.2f} s after load_splits began "
          f"(process {warm['process_wall_s']:.1f} s incl. imports)")
    stream_data = dict(data, image_size=[args.stream_size, args.stream_size],
                       cache_dir=os.path.join(work, "cache-2"), workers=2,
                       memory_budget_mb=args.budget_mb)
    load_splits(config_from_dict({"data": stream_data}).data)  # decode (not timed)
    res = subprocess.run([sys.executable, "-c", STREAM, json.dumps({"data": stream_data})],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    stream = json.loads(res.stdout.strip().splitlines()[-1])
    stream["budget_mb"] = args.budget_mb
    stream["decoded_mb"] = args.images * args.stream_size ** 2 * 3 / 1e6
    print(f"streaming {stream['decoded_mb']:.0f} MB with a {args.budget_mb:.0f} MB budget: "
          f"peak RSS growth {stream['peak_growth_mb']:.0f} MB, after the first batch "
          f"{stream['steady_peak_growth_mb']:.0f} MB (absolute {stream['peak_rss_mb']:.0f} MB)")
    decoded_mb = args.images * args.size * args.size * 3 / 1e6
    write_result(args.out, {
        "what": "image-folder decode into the uint8 disk cache and warm start",
        "command": " ".join(["python"] + sys.argv),
        "images": args.images, "image_size": [args.size, args.size], "resize": "crop",
        "decoded_mb": decoded_mb,
        "cold_decode": {str(k): v for k, v in cold.items()},
        "speedup_2_vs_1": cold[2]["images_per_s"] / cold[1]["images_per_s"],
        "warm_start": warm,
        "streaming": stream,
        "goals": {"warm_first_batch_under_5_s": warm["first_batch_s"] < 5.0,
                  "streaming_peak_rss_growth_under_budget":
                      stream["streamed"] and stream["peak_growth_mb"] < args.budget_mb,
                  "streaming_steady_growth_under_budget":
                      stream["streamed"] and stream["steady_peak_growth_mb"] < args.budget_mb,
                  "streamed_at_least_3x_budget": stream["decoded_mb"] >= 3 * args.budget_mb},
        "load_average_1_5_15": list(os.getloadavg()),
        "machine": machine_info(),
    })
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
