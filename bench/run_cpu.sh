#!/usr/bin/env bash
# CPU benchmarks: one run, every figure beside the read floor measured in the same run.
# Writes bench/out/stats_table.md and pytest-benchmark's JSON to bench/out/cpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m pytest bench -m "not gpu" -p no:cacheprovider -q \
  --benchmark-json=bench/out/cpu.json --benchmark-columns=min,median,max --benchmark-sort=name "$@"
