#!/usr/bin/env bash
# The README's test command: sets everything up, then runs the test suite (GPU tests skip with a
# reason where no GPU is usable). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q tests "$@"
