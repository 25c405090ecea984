#!/usr/bin/env bash
# Creates .venv in the repo root (if needed) and installs tfigkd with its
# test and MCU extras. Re-running is cheap: a stamp skips a reinstall when
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
  .venv/bin/python -m pip install --quiet -e ".[test,mcu]"
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
