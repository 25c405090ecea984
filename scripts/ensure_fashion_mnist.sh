#!/usr/bin/env bash
# Makes Fashion-MNIST available: Debian's dataset-fashion-mnist package when
# apt-get is usable, else nothing here (the config then lets Keras download
# it to ~/.keras/datasets/fashion-mnist). Prints extra CLI flags to use.
set -uo pipefail
DIR=/usr/share/datasets/fashion-mnist
have() { [ -f "$DIR/train-images-idx3-ubyte.gz" ] || [ -f "$HOME/.keras/datasets/fashion-mnist/train-images-idx3-ubyte.gz" ]; }
if ! have && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  fi
  if [ "$SUDO" != none ]; then
    echo "Installing Debian's dataset-fashion-mnist ..." >&2
    $SUDO apt-get install -y -q dataset-fashion-mnist >&2 \
      || { $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q dataset-fashion-mnist >&2; } \
      || echo "apt-get could not install dataset-fashion-mnist; falling back to Keras' download." >&2
  fi
fi
if ! have; then
  echo "--set data.download=true"
fi
