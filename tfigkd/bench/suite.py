"""Convert teacher and students in every quantisation, check accuracy, time them."""

from __future__ import annotations

import logging
import os
import time

import tfigkd
from tfigkd.bench.latency import (benchmark_tflite, compare_with_litert_benchmark,
                                  litert_benchmark, plot_latency, speedups)
from tfigkd.bench.machine import machine_info
from tfigkd.export.targets import QUANTS
from tfigkd.io import read_json, write_json, write_text
from tfigkd.layout import BENCH_JSON, BENCH_MD, BENCH_MODELS_DIR, LATENCY_PNG

log = logging.getLogger(__name__)


def _convert_all(entries, quants, splits, out_dir, calibration_images, check_images, verbose,
                 cfg=None):
    from tfigkd.data import normalize
    from tfigkd.export.checks import litert_check
    from tfigkd.export.inputs import model_input_norm, model_pixels, model_size
    from tfigkd.export.sampling import check_subset, representative_images
    from tfigkd.export.tflite import convert, save_tflite
    from tfigkd.io import file_sha256
    from tfigkd.models import count_macs, load_model_file

    models = []
    test = check_subset(splits.test, check_images or None)
    for e in entries:
        model = load_model_file(e["keras_path"], f"--{e['role']}")
        norm = model_input_norm(e["keras_path"], cfg, e.get("input_norm"))
        sha = file_sha256(e["keras_path"])
        macs = count_macs(model)
        # A teacher at its own input size (teacher.input_size) is fed images resized to it.
        size = model_size(model, splits, cfg, e["keras_path"])
        x_test = ref = None  # computed only if some quantisation is not cached yet
        for q in quants:
            path = os.path.join(out_dir, BENCH_MODELS_DIR, f"{e['name']}_{q}.tflite")
            info_path = path + ".json"
            if os.path.exists(info_path) and read_json(info_path).get("source_sha256") == sha:
                info = read_json(info_path)  # converted and checked by an earlier run
            else:
                if ref is None:
                    x_test = normalize(model_pixels(test.x, size), norm, splits.mean,
                                       splits.std).numpy()
                    ref = model.predict(x_test, batch_size=256, verbose=0).argmax(1)
                rep = (representative_images(splits, norm, calibration_images, size=size)
                       if q == "int8" else None)
                data = convert(model, q, rep)
                save_tflite(data, path)
                check, _ = litert_check(data, x_test, test.y, ref)
                info = {"source_sha256": sha, "keras_accuracy": float((ref == test.y).mean()),
                        "accuracy": check["accuracy"],
                        "agreement_with_keras": check["agreement_with_keras"],
                        "check_images": check["images"]}
                write_json(info_path, info)
            if verbose:
                log.info(f"{e['name']:<10} {q:<8} {os.path.getsize(path):>10,} B  accuracy "
                         f"{info['accuracy']:.4f} (Keras {info['keras_accuracy']:.4f}, agreement "
                         f"{info['agreement_with_keras']:.2%})")
            models.append({"name": e["name"], "role": e["role"], "quant": q, "path": path,
                           "macs": macs, "keras_accuracy": info["keras_accuracy"],
                           "accuracy": info["accuracy"],
                           "accuracy_drop": info["keras_accuracy"] - info["accuracy"],
                           "agreement_with_keras": info["agreement_with_keras"]})
    return models


def run_bench(entries, splits, out_dir, quants=QUANTS,
              batches=(1, 64), threads=(1, None), runs=100, warmup=10,
              calibration_images=256, check_images=None, verbose=True, cfg=None):
    """Benchmarks teacher and students in each quantisation, side by side.

    Args:
        entries: ``[{"name", "role" ("teacher"|"student"), "keras_path"}, ...]``.
        splits: ``SplitData`` (int8 calibration from train, accuracy on test).
        out_dir: Gets ``models/*.tflite``, ``bench.json``, ``bench.md`` and ``latency.png``.
        cfg: Experiment config: fallback for each model's input normalisation.

    Returns:
        The dict written to ``bench.json``.
    """
    os.makedirs(out_dir, exist_ok=True)
    models = _convert_all(entries, quants, splits, out_dir, calibration_images, check_images,
                          verbose, cfg)
    t0 = time.time()
    rows = benchmark_tflite(models, batches=batches, threads=threads, runs=runs, warmup=warmup,
                            progress=verbose)
    # Cross-check at batch 1 on 1 thread with the official tool, on the same files.
    for r in rows:
        if r["batch"] == 1 and r["threads"] == 1:
            theirs = litert_benchmark(r["path"], threads=1, runs=max(runs, 100), warmup=warmup)
            r["litert_benchmark"] = theirs
            r["litert_benchmark_check"] = compare_with_litert_benchmark(r["median_ms"], theirs)
            if r["litert_benchmark_check"] == "disagree":
                log.warning("%s %s: our median %.3f ms vs litert-benchmark %.3f ms: more than "
                            "2x apart; the machine may be busy.", r["name"], r["quant"],
                            r["median_ms"], theirs["median_ms"])
    result = {"tfigkd_version": tfigkd.__version__, "machine": machine_info(),
              "runs": runs, "warmup": warmup, "bench_seconds": time.time() - t0,
              "dataset": splits.name, "rows": rows, "speedups": speedups(rows)}
    write_json(os.path.join(out_dir, BENCH_JSON), result)
    plot_latency(rows, os.path.join(out_dir, LATENCY_PNG))
    lines = ["| model | quant | bytes | MACs | accuracy | batch | threads | median ms | p90 ms | "
             "ms/image |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['quant']} | {r['bytes']:,} | {r['macs']:,} | "
                     f"{r['accuracy']:.4f} | {r['batch']} | {r['threads']} | {r['median_ms']:.3f} | "
                     f"{r['p90_ms']:.3f} | {r['median_ms_per_image']:.3f} |")
    checked = [r for r in rows if r.get("litert_benchmark")]
    if checked:
        lines += ["", "Cross-check with `litert-benchmark` (batch 1, 1 thread, same files):", "",
                  "| model | quant | ours median ms | litert-benchmark median ms | check |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['quant']} | {r['median_ms']:.3f} | "
                  f"{r['litert_benchmark']['median_ms']:.2f} | {r['litert_benchmark_check']} |"
                  for r in checked]
    lines += ["", "| student | quant | batch | threads | speed-up vs teacher | MAC ratio |",
              "|---|---|---|---|---|---|"]
    for s in result["speedups"]:
        lines.append(f"| {s['name']} | {s['quant']} | {s['batch']} | {s['threads']} | "
                     f"{s['speedup_vs_teacher']:.2f}x | {s['mac_ratio']:.2f}x |")
    write_text(os.path.join(out_dir, BENCH_MD), "\n".join(lines) + "\n")
    if verbose:
        log.info("\n".join(lines))
    return result
