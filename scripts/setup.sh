#!/usr/bin/env bash
# Creates .venv (once), installs torch 2.13.0 (CPU) first, then exactly the set requirements-lock.txt
# pins (nothing more, nothing less), and builds and installs gradprobe (CUDA module too where nvcc
# exists; GRADPROBE_CUDA=AUTO|ON|OFF). On a Python or platform the lock was not resolved for, it
# warns and resolves requirements-dev.txt instead. Regenerate the lock: bash scripts/lock.sh
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
running=$(.venv/bin/python -c 'import sys, sysconfig; print(f"{sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}")')
locked=$(sed -n "s/^# resolved for: //p" requirements-lock.txt 2>/dev/null || true)
if [ "$running" = "$locked" ]; then
  source=requirements-lock.txt
else
  source=requirements-dev.txt
  echo "setup.sh: WARNING: requirements-lock.txt was resolved for ${locked:-nothing}, this is $running:" \
    "installing requirements-dev.txt unpinned (not reproducible; bash scripts/lock.sh locks for this one)" >&2
fi
# Skipped when the file installed last time is unchanged (a copy of it is kept in .venv).
if ! cmp -s "$source" .venv/.installed-from; then
  if [ "$source" = requirements-lock.txt ]; then
    # --no-deps: the lock already lists every dependency; then remove what it does not list (left by an
    # earlier lock or by hand), and check that the venv is now exactly the lock.
    "${PIP[@]}" install --no-deps -r requirements-lock.txt
    mapfile -t extra < <("${PIP[@]}" freeze --all | .venv/bin/python scripts/lockfile.py extras requirements-lock.txt)
    if [ "${#extra[@]}" -gt 0 ]; then
      echo "setup.sh: removing what requirements-lock.txt does not list: ${extra[*]}"
      "${PIP[@]}" uninstall -y "${extra[@]}"
    fi
    "${PIP[@]}" freeze --all | .venv/bin/python scripts/lockfile.py compare requirements-lock.txt \
      || { echo "setup.sh: .venv differs from requirements-lock.txt (above)" >&2; exit 1; }
  else
    "${PIP[@]}" install -r requirements-dev.txt
  fi
  cp "$source" .venv/.installed-from
fi
export GRADPROBE_CUDA=${GRADPROBE_CUDA:-AUTO}
"${PIP[@]}" install --no-build-isolation --no-deps .
