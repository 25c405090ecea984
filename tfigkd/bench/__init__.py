"""Latency benchmarks of ``.tflite`` files in the LiteRT interpreter."""

from tfigkd.bench.latency import benchmark_tflite, plot_latency, speedups

__all__ = ["benchmark_tflite", "plot_latency", "speedups"]
