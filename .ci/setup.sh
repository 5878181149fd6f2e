#!/usr/bin/env bash
# Set up a fresh machine for Tango3D.  Usage: bash .ci/setup.sh [app|test]
#   app  : what the explorer needs
#   test : app + what the test suite needs (Chromium for the browser tests)
# System packages: libusb-1.0-0 (Open3D links it), chromium + chromium-driver (browser tests).
set -euo pipefail
what="${1:-app}"
cd "$(dirname "$0")/.."

pkgs="libusb-1.0-0"
[ "$what" = "test" ] && pkgs="$pkgs chromium chromium-driver"
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
  fi
fi

PY="${PYTHON:-python}"
# torch first, so nothing else can pull a multi-GB CUDA build by accident.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 || ls /opt/wheels/torch-2.13.0+cpu* >/dev/null 2>&1; then
    "$PY" -m pip install -q "torch==2.13.0"
  else
    "$PY" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"$PY" -m pip install -q -e ".[$what]"
