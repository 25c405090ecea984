#!/usr/bin/env bash
# Creates .venv in the repo root (if needed) and installs tfigkd with its
# test, MCU, explain (tf-explain) extras, then mediapipe. Re-running is cheap: a stamp skips a reinstall when
# setup.cfg has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: no python3 found; install Python 3.11" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.tfigkd-installed
want=$(sha256sum setup.cfg pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test,mcu,explain]"
  # MediaPipe in a second step: its absl-py~=2.3 pin and
  # tensorflow-model-optimization's absl-py~=1.2 make one resolve impossible,
  # yet both work with absl-py 2 (see setup.cfg). That one declared conflict
  # is tolerated below; any other fails the setup.
  .venv/bin/python -m pip install --quiet "mediapipe>=1.2.3,<2"
  if ! out=$(.venv/bin/python -m pip check 2>&1); then
    other=$(printf '%s\n' "$out" | grep -v 'tensorflow-model-optimization .* absl-py' || true)
    if [ -n "$other" ]; then printf '%s\n' "$other" >&2; exit 1; fi
  fi
  echo "$want" > "$stamp"
fi
