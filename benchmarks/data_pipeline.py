"""Image-folder benchmark: cold decode throughput (1 and 2 threads), warm start, streaming RSS.

A synthetic folder of JPEG and PNG files of mixed sizes (64-200 px) and
colour modes is decoded to ``--size`` RGB through ``tfigkd.data.load_splits``
(``data.image_size``, ``resize: crop``) into a fresh cache, once per worker
count. Then, in a fresh Python process, the same config is loaded again from
the warm cache and the first training batch is taken; the script reports the
time from the start of ``load_splits`` to that batch (the goal: < 5 s) and
the whole process's wall time including Python and TensorFlow imports.

    python benchmarks/data_pipeline.py --images 3000 --repeats 3 --out benchmarks/results/data_pipeline.json

Streaming: the same folder decoded at ``--stream-size``, plus a float16
IG-like map per image (together at least 3x ``--budget-mb``), is trained on
for one epoch (a small conv net, with an overlay that reads the maps) and
then evaluated, in a fresh process with ``data.memory_budget_mb:
--budget-mb``; a thread samples the process's resident set (VmRSS) every
10 ms from just before ``fit``. Three runs, each its own process:

- ``streamed``: the data as configured (images and maps read per batch);
- ``control``: the same code and number of steps over 72 images, so its
  growth is the fixed cost of TensorFlow's pipeline, the model and the
  allocator, which does not depend on the amount of data;
- ``in_memory``: the same data with a budget large enough to load it.

The goal is held against the streamed run's growth above the control's:
the memory that scales with the data. Absolute figures are reported too.
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
import numpy as np

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

import keras
import tensorflow as tf
from tfigkd.config import config_from_dict
from tfigkd.data import load_splits, make_dataset
from tfigkd.data.lazy import LazyRows, select_rows

cfg = config_from_dict(json.loads(sys.argv[1]))
maps_path, epochs = sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
splits = load_splits(cfg.data)
# IG-like float16 maps for every training image, joined as tfigkd joins stored maps:
# streamed beside streamed images, in memory beside in-memory ones.
all_maps = LazyRows.open(maps_path)
maps = select_rows(all_maps, splits.train.index)
if not isinstance(splits.train.x, LazyRows):
    maps = np.asarray(maps)
load_s = time.perf_counter() - t

def overlay(b, seed):  # reads the maps, as the IG overlay does
    m = tf.cast(b["ig_map"], tf.float32)[..., None]
    return dict(b, image=tf.cast(tf.cast(b["image"], tf.float32) * (0.5 + m), tf.uint8))

keras.utils.set_random_seed(0)
h, w, c = splits.input_shape
model = keras.Sequential([keras.Input((h, w, c)), keras.layers.Conv2D(8, 5, strides=4),
                          keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(splits.num_classes)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
ds = make_dataset(splits.train, batch_size=64, training=True, input_norm="unit", seed=0,
                  crop_pad=4, flip=True, num_epochs=epochs, extras={"ig_map": maps},
                  batch_transform=overlay)
test = make_dataset(splits.test, batch_size=64, training=False)
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
steps = -(-len(splits.train) // 64)
model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0)
model.evaluate(test, verbose=0)
fit_s = time.perf_counter() - t
stop.set(); th.join()
print(json.dumps({"streamed": isinstance(splits.train.x, LazyRows),
                  "maps_streamed": isinstance(maps, LazyRows),
                  "train_images": len(splits.train), "epochs": epochs,
                  "train_bytes_mb": (splits.train.x.nbytes + maps.nbytes) / 1e6,
                  "load_s": load_s, "fit_and_evaluate_s": fit_s, "rss_before_mb": base,
                  "peak_rss_mb": peak[0], "peak_growth_mb": peak[0] - base}))
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
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", default="benchmarks/results/data_pipeline.json")
    args = p.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfigkd.config import config_from_dict
    from tfigkd.data import load_splits
    from tfigkd.bench.machine import machine_info

    work = args.workdir or tempfile.mkdtemp(prefix="tfigkd-bench-data-")
    folder = os.path.join(work, "images")
    if not os.path.isdir(folder):
        t = time.perf_counter()
        make_folder(folder, args.images)
        print(f"made {args.images} images in {time.perf_counter() - t:.1f} s")
    data = {"source": "image_folder", "path": folder, "image_size": [args.size, args.size],
            "resize": "crop", "color": "rgb", "val_fraction": 0.1}
    # Cold decodes, 1 and 2 threads interleaved (so a change in load hits both), repeated.
    secs = {1: [], 2: []}
    for rep in range(args.repeats):
        for workers in (1, 2):
            cache = os.path.join(work, f"cache-{workers}")
            shutil.rmtree(cache, ignore_errors=True)
            cfg = config_from_dict({"data": dict(data, cache_dir=cache, workers=workers)})
            t = time.perf_counter()
            load_splits(cfg.data)
            secs[workers].append(time.perf_counter() - t)
    cold = {}
    for workers, v in secs.items():
        rates = [args.images / x for x in v]
        cold[workers] = {"seconds": v, "images_per_s_median": float(np.median(rates)),
                         "images_per_s_min_max": [min(rates), max(rates)]}
        print(f"cold decode, {workers} thread(s): median {np.median(rates):.0f} img/s "
              f"[{min(rates):.0f}, {max(rates):.0f}] over {args.repeats} runs")
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
    # Streaming: images at --stream-size plus float16 IG-like maps, over 3x the budget.
    stream_data = dict(data, image_size=[args.stream_size, args.stream_size],
                       cache_dir=os.path.join(work, "cache-2"), workers=2,
                       memory_budget_mb=args.budget_mb)
    load_splits(config_from_dict({"data": stream_data}).data)  # decode (not timed)
    maps_path = os.path.join(work, f"maps-{args.stream_size}.npy")
    if not os.path.exists(maps_path):
        from tfigkd.data.lazy import NpyRowWriter

        rng = np.random.default_rng(0)
        with NpyRowWriter(maps_path, (args.images, args.stream_size, args.stream_size),
                          np.float16) as w:
            for s in range(0, args.images, 256):
                k = min(256, args.images - s)
                w.write(s, rng.random((k, args.stream_size, args.stream_size), np.float32))

    def stream_run(data_cfg, epochs):
        res = subprocess.run([sys.executable, "-c", STREAM, json.dumps({"data": data_cfg}),
                              maps_path, str(epochs)], capture_output=True, text=True,
                             env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        return json.loads(res.stdout.strip().splitlines()[-1])

    # The control streams 64 training images (a few MB) through the same code for the
    # same number of steps: what it grows by is the fixed cost of TensorFlow's pipeline,
    # model and allocator, which does not depend on how much data there is.
    n_train = len(load_splits(config_from_dict({"data": stream_data}).data).train)
    steps = -(-n_train // 64)
    kinds = {"control": (dict(stream_data, train_subset=72), -(-steps // 2)),
             "streamed": (stream_data, 1),
             "in_memory": (dict(stream_data, memory_budget_mb=1e6), 1)}
    runs = {k: [] for k in kinds}
    for rep in range(args.repeats):  # interleaved
        for k, (d, epochs) in kinds.items():
            if k != "in_memory" or rep == 0:  # the contrast needs one run
                runs[k].append(stream_run(d, epochs))
    growth = {k: [r["peak_growth_mb"] for r in v] for k, v in runs.items()}
    for k, v in runs.items():
        r = v[0]
        print(f"{k:>9}: {r['train_images']} images x {r['epochs']} epoch(s), "
              f"{r['train_bytes_mb']:.0f} MB of images+maps, streamed={r['streamed']}: peak RSS "
              f"growth median {np.median(growth[k]):.0f} MB [{min(growth[k]):.0f}, "
              f"{max(growth[k]):.0f}] (absolute {np.median([x['peak_rss_mb'] for x in v]):.0f} MB)")
    above = float(np.median(growth["streamed"]) - np.median(growth["control"]))
    stream = {"runs": runs, "peak_growth_mb": growth, "budget_mb": args.budget_mb,
              "decoded_mb": args.images * args.stream_size ** 2 * 3 / 1e6,
              "maps_mb": args.images * args.stream_size ** 2 * 2 / 1e6,
              "growth_above_control_mb": above,
              "streamed_run_max_growth_above_control_max_mb":
                  max(growth["streamed"]) - max(growth["control"])}
    print(f"streaming {stream['decoded_mb'] + stream['maps_mb']:.0f} MB (images + maps) with a "
          f"{args.budget_mb:.0f} MB budget: median peak RSS growth above the control {above:.0f} MB")
    decoded_mb = args.images * args.size * args.size * 3 / 1e6
    write_result(args.out, {
        "what": "image-folder decode into the uint8 disk cache and warm start",
        "command": " ".join(["python"] + sys.argv),
        "images": args.images, "image_size": [args.size, args.size], "resize": "crop",
        "decoded_mb": decoded_mb,
        "cold_decode": {str(k): v for k, v in cold.items()},
        "speedup_2_vs_1": cold[2]["images_per_s_median"] / cold[1]["images_per_s_median"],
        "warm_start": warm,
        "streaming": stream,
        "goals": {"warm_first_batch_under_5_s": warm["first_batch_s"] < 5.0,
                  "streaming_growth_above_control_under_budget":
                      all(r["streamed"] and r["maps_streamed"] for r in runs["streamed"])
                      and above < args.budget_mb,
                  "streaming_absolute_growth_under_budget":
                      max(growth["streamed"]) < args.budget_mb,
                  "streamed_at_least_3x_budget": stream["decoded_mb"] >= 3 * args.budget_mb},
        "load_average_1_5_15": list(os.getloadavg()),
        "machine": machine_info(),
    })
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
