#!/usr/bin/env bash
# The test command: sets up .venv and runs the fast test suite (no `large`).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m large`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q "$@"
