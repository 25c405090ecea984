#!/usr/bin/env bash
# The main job, end to end on real Fashion-MNIST (configs/main.yaml): the
# shipped ResNet-8x2 teacher (teachers/), its IG maps, a compact DS-CNN student
# in three modes (student, consistent kd, kd_ig) x three paired seeds with
# statistics, int8 exports for phone (MediaPipe-ready) and microcontroller
# (TFLite Micro) with latency against the teacher; summary.json, report.md and
# report.html. Extra arguments go to `tfigkd run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
EXTRA=$(bash scripts/ensure_fashion_mnist.sh)
# shellcheck disable=SC2086
exec .venv/bin/tfigkd run configs/main.yaml --out "${OUT:-runs/main}" $EXTRA "$@"
