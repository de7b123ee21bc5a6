#!/usr/bin/env bash
# Creates .venv (once), installs torch 2.13.0 (CPU) first, the dev requirements, and builds and
# installs gradprobe (CUDA module too where nvcc exists; GRADPROBE_CUDA=AUTO|ON|OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
export PIP_CONSTRAINT="$PWD/scripts/constraints.txt"
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  "${PIP[@]}" install torch==2.13.0
fi
if [ ! -f .venv/.dev-requirements ] || ! cmp -s requirements-dev.txt .venv/.dev-requirements; then
  "${PIP[@]}" install -r requirements-dev.txt
  cp requirements-dev.txt .venv/.dev-requirements
fi
export GRADPROBE_CUDA=${GRADPROBE_CUDA:-AUTO}
"${PIP[@]}" install --no-build-isolation --no-deps .
