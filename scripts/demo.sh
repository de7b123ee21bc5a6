#!/usr/bin/env bash
# The README's main job: sets everything up, then runs `gradprobe demo`. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gradprobe demo "$@"
