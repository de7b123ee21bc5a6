#!/usr/bin/env bash
# CPU benchmarks: one run, every figure beside the read floor measured in the same run.
# Writes bench/out/stats_table.md and pytest-benchmark's JSON to bench/out/cpu.json, then prints
# the CPU-target matrix (target x case -> multiple of the read floor) for each tensor set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p bench/out
"$PY" -m pytest bench -m "not gpu" -p no:cacheprovider -q \
  --benchmark-json=bench/out/cpu.json --benchmark-columns=min,median,max --benchmark-sort=name "$@"
"$PY" - <<'PYEOF'
import json
from gradprobe import _core

runs = json.load(open("bench/out/cpu.json"))
cells, cases, targets, sets = {}, [], [], []
for b in runs["benchmarks"]:
    info = b.get("extra_info", {})
    if "target" not in info:
        continue
    key = (info["set"], info["target"], info["case"])
    cells[key] = info["ratio_to_floor"]
    for seq, v in ((sets, info["set"]), (targets, info["target"]), (cases, info["case"])):
        if v not in seq:
            seq.append(v)
print(f"\nCPU targets (x the read floor; best here: {_core.best_cpu_path()}; {runs['machine_info'].get('cpu', {}).get('brand_raw', '')})")
for s in sets:
    print(f"\n{s:12s} " + " ".join(f"{c:>12s}" for c in cases))
    for t in targets:
        print(f"{t:12s} " + " ".join(f"{cells.get((s, t, c), float('nan')):12.2f}" for c in cases))
PYEOF
