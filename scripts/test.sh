#!/usr/bin/env bash
# The README's test command: sets everything up, then runs the test suite (GPU tests skip with a
# reason where no GPU is usable). Extra arguments go to pytest.
#   bash scripts/test.sh            the locked set (requirements-lock.txt, in .venv)
#   bash scripts/test.sh --latest   the newest releases of requirements-dev.txt (.venv-latest)
#   bash scripts/test.sh --oldest   tests/integrations only, against the oldest supported transformers,
#                                   accelerate and lightning (requirements-oldest.txt, .venv-oldest)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --latest)
    shift
    bash scripts/setup_latest.sh
    exec .venv-latest/bin/python -m pytest -q tests "$@"
    ;;
  --oldest)
    shift
    bash scripts/setup.sh
    bash scripts/setup_oldest.sh
    # Proof of what runs: each pinned version is the one importlib.metadata finds, and where from.
    .venv-oldest/bin/python scripts/lockfile.py verify .venv-oldest/.installed-from
    exec .venv-oldest/bin/python -m pytest -q tests/integrations "$@"
    ;;
  *)
    bash scripts/setup.sh
    exec .venv/bin/python -m pytest -q tests "$@"
    ;;
esac
