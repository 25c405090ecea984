#!/usr/bin/env bash
# The main job, end to end on real Fashion-MNIST: teacher, IG maps, students
# in four modes, int8 TFLite export, summary.json and report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
EXTRA=$(bash scripts/ensure_fashion_mnist.sh)
# shellcheck disable=SC2086
exec .venv/bin/tfigkd run configs/quickstart.yaml --out "${OUT:-runs/quickstart}" $EXTRA "$@"
