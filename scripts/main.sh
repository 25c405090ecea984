#!/usr/bin/env bash
# The main job, end to end on real Fashion-MNIST data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
EXTRA=$(bash scripts/ensure_fashion_mnist.sh)
# shellcheck disable=SC2086
exec .venv/bin/tfigkd train-teacher --config configs/fashion_mnist.yaml \
  --out "${OUT:-runs/fashion_mnist}" $EXTRA "$@"
