"""Phone exports in MediaPipe's ImageClassifier vs LiteRT, and uint8 vs float32 input for int8.

Exports one trained model for the phone target (fp32, fp16, int8 with uint8
input: the shipped profile) plus two int8 variants for comparison: float32
input (quantise inside the model, otherwise identical) and the plain int8
file without the app front/back (int8 IO, normalised input, logits out).
Each file is checked on the whole test split in LiteRT and (app-ready ones)
in MediaPipe's ``ImageClassifier``; then the files are timed side by side in
LiteRT (batch 1, 1 thread, interleaved rounds), and the app-ready files also
end to end in MediaPipe (``classify`` on a camera-sized uint8 RGB frame,
interleaved rounds).

Writes ``benchmarks/results/phone_mediapipe_fashion_mnist.json``.

Usage::

    .venv/bin/python benchmarks/phone_mediapipe.py \\
        --config configs/fashion_mnist_fast.yaml \\
        --model runs/students_bench/ds_cnn_l/students/kd-s0/student.keras
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from common import write_result  # noqa: E402

from tfigkd.bench.latency import benchmark_tflite  # noqa: E402
from tfigkd.config import load_config  # noqa: E402
from tfigkd.data import load_splits  # noqa: E402
from tfigkd.export.exporter import export_model  # noqa: E402
from tfigkd.export.mediapipe_check import rgb_pixels  # noqa: E402
from tfigkd.export.targets import load_profile  # noqa: E402


def _variant_profile(folder, name, **changes):
    data = yaml.safe_load(open(load_profile("phone").source))
    data.update(changes)
    path = os.path.join(folder, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return load_profile(path)


def mediapipe_latency(paths, frames, rounds=10):
    """Median ms per ``classify`` call of each file, in interleaved rounds."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    imgs = [mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(f))
            for f in frames]
    clfs = {k: vision.ImageClassifier.create_from_options(vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=p), max_results=1)) for k, p in paths.items()}
    times = {k: [] for k in paths}
    for k, c in clfs.items():  # warm-up
        for im in imgs[:50]:
            c.classify(im)
    per_round = max(1, len(imgs) // rounds)
    for r in range(rounds):
        for k, c in clfs.items():
            for im in imgs[r * per_round:(r + 1) * per_round]:
                t = time.perf_counter()
                c.classify(im)
                times[k].append(time.perf_counter() - t)
    for c in clfs.values():
        c.close()
    return {k: {"median_ms": 1e3 * float(np.median(v)), "p90_ms": 1e3 * float(np.percentile(v, 90)),
                "calls": len(v)} for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/fashion_mnist_fast.yaml")
    ap.add_argument("--model", default="runs/students_bench/ds_cnn_l/students/kd-s0/student.keras")
    ap.add_argument("--work", default="runs/phone_mediapipe/bench")
    ap.add_argument("--runs", type=int, default=2000, help="LiteRT invokes per file")
    ap.add_argument("--mediapipe-frames", type=int, default=2000)
    ap.add_argument("--out", default="benchmarks/results/phone_mediapipe_fashion_mnist.json")
    args = ap.parse_args(argv)
    t0 = time.time()
    cfg = load_config(args.config)
    splits = load_splits(cfg.data)
    os.makedirs(args.work, exist_ok=True)
    variants = {
        "fp32": (load_profile("phone"), "fp32"),
        "fp16": (load_profile("phone"), "fp16"),
        "int8_uint8_in": (load_profile("phone"), "int8"),
        "int8_float_in": (_variant_profile(args.work, "phone_float_in", io_type="float32"), "int8"),
        "int8_plain": (_variant_profile(args.work, "phone_plain", io_type="int8",
                                        output_type=None, app_ready=False, rgb_input=False),
                       "int8"),
    }
    rows = {}
    for name, (prof, quant) in variants.items():
        meta = export_model(args.model, "phone", splits, quant=quant, cfg=cfg, profile=prof,
                            out_dir=os.path.join(args.work, name), verbose=False)
        lite, mp = meta["checks"]["litert"], meta["checks"]["mediapipe"]
        rows[name] = {"path": meta["path"], "bytes": meta["bytes"], "input": meta["input"],
                      "output": meta["output"], "app_ready": meta["app_ready"],
                      "litert_accuracy": lite["accuracy"], "keras_accuracy": lite["keras_accuracy"],
                      "litert_agreement_with_keras": lite["agreement_with_keras"],
                      "mediapipe": mp}
        print(f"{name:14} {meta['bytes']:>9,} B  LiteRT {lite['accuracy']:.4f}  MediaPipe "
              f"{mp.get('accuracy', mp['loads'])}", flush=True)
    timed = benchmark_tflite([{"name": k, "path": r["path"]} for k, r in rows.items()],
                             batches=(1,), threads=(1,), runs=args.runs, warmup=100,
                             progress=False)
    for t in timed:
        rows[t["name"]]["litert_latency"] = {k: t[k] for k in ("median_ms", "p90_ms", "iqr_ms",
                                                                "runs")}
    frames = rgb_pixels(splits.test.x[:args.mediapipe_frames])
    mp_lat = mediapipe_latency({k: r["path"] for k, r in rows.items() if r["app_ready"]}, frames)
    for k, v in mp_lat.items():
        rows[k]["mediapipe_latency"] = v
    for k, r in rows.items():
        print(f"{k:14} LiteRT {r['litert_latency']['median_ms']:.3f} ms"
              + (f", MediaPipe classify {r['mediapipe_latency']['median_ms']:.3f} ms"
                 if "mediapipe_latency" in r else ""))
    from tfigkd.bench.machine import machine_info

    write_result(args.out, {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "config": args.config, "model": args.model, "dataset": splits.name,
        "sizes": splits.sizes(), "rows": rows, "machine": machine_info(),
        "wall_seconds": time.time() - t0})


if __name__ == "__main__":
    main()
