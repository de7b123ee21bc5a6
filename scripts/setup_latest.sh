#!/usr/bin/env bash
# Builds .venv-latest for `bash scripts/test.sh --latest`: the newest release of everything in
# requirements-dev.txt (torch stays 2.13.0), to find drift on purpose rather than on a fresh clone.
# Upgrades on every run; gradprobe is built against it in its own build folder (build/latest).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-latest/bin/python ]; then
  "$PYTHON" -m venv .venv-latest
fi
PIP=(.venv-latest/bin/python -m pip --disable-pip-version-check -q)
export PIP_CONSTRAINT="$PWD/scripts/constraints.txt"
"${PIP[@]}" install torch==2.13.0
"${PIP[@]}" install --upgrade --upgrade-strategy eager -r requirements-dev.txt
echo "setup_latest.sh: where the newest releases differ from requirements-lock.txt:"
"${PIP[@]}" freeze --all | .venv-latest/bin/python scripts/lockfile.py compare requirements-lock.txt \
  || true  # a difference is what this run is for, not an error
export GRADPROBE_CUDA=${GRADPROBE_CUDA:-AUTO}
"${PIP[@]}" install --no-build-isolation --no-deps -Cbuild-dir=build/latest .
