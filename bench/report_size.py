"""Size and generation time of the HTML report of a long synthetic run.

    .venv/bin/python bench/report_size.py [--steps 100000] [--layers 24] [--out DIR]

The run looks like the default preset wrote it: gradient statistics with exponent histograms on
every step, weights and updates every 5th step, activations every 10th, loss/lr/overhead scalars
on every step and an evaluation every 1000, a system sample per node every 10 steps, step phases
on every step, and a few findings. It is written through the store's own writer; the report is
then generated twice (the first read warms the page cache) and the second time is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from gradprobe.report import write_report
from gradprobe.stats import FIELDS, HIST_BINS
from gradprobe.store import RunWriter, StoreConfig
from gradprobe.store.schema import PHASE_COLUMNS, SCHEMAS, compact_hist
from gradprobe.store.writer import prepare_run_dir, write_json_atomic

CHUNK = 2000  # steps per written batch


def _stats_batch(rng: np.random.Generator, steps: np.ndarray, kind: str, names: list[str]) -> pa.RecordBatch:
    n = len(steps) * len(names)
    step = np.repeat(steps, len(names))
    tensor = np.tile(np.array(names, dtype=object), len(steps))
    columns = {c: rng.uniform(0.0, 1.0, n) for c in FIELDS}
    for c in ("numel", "finite", "zeros", "nans", "infs"):
        if c in columns:
            columns[c] = np.full(n, 4096, np.int64) if c in ("numel", "finite") else np.zeros(n, np.int64)
    columns["l2"] = np.exp(rng.normal(-3 if kind == "grad" else 1, 1, n))
    hist = np.zeros((n, HIST_BINS), np.int64)
    centre = rng.integers(50, 60, n)
    for offset in range(-8, 9):  # ~17 occupied exponent bins, as real gradients have
        hist[np.arange(n), centre + offset] = rng.integers(1, 400, n)
    lo, lists = compact_hist(hist, n)
    ratio = pa.array(rng.uniform(1e-4, 1e-2, n)) if kind == "update" else pa.nulls(n, pa.float64())
    return pa.RecordBatch.from_arrays(
        [pa.array(step), pa.array(["train"] * n), pa.array([kind] * n), pa.array(tensor.tolist()),
         pa.array(np.ones(n, bool))] + [pa.array(columns[c]) for c in FIELDS] + [lo, lists, ratio],
        schema=SCHEMAS["stats"])


def synthesise(out: Path, steps: int, layers: int) -> float:
    """Writes the run; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    prepare_run_dir(out, "overwrite")
    names = [f"encoder.layer.{i // 2}.{'weight' if i % 2 == 0 else 'bias'}" for i in range(layers)]
    modules = [f"encoder.layer.{i}.act" for i in range(layers // 2)]
    start = time.time() - steps * 0.1
    write_json_atomic(out / "meta.json", {
        "schema_version": 1, "start_time": start, "end_time": start + steps * 0.1, "status": "completed",
        "model": {"type": "Synthetic", "modules": [{"name": m, "type": "GELU"} for m in modules]},
        "parameters": [{"name": n, "shape": [64, 64], "requires_grad": True} for n in names],
        "optimizers": [{"type": "AdamW", "param_groups": [{"lr": 1e-4, "weight_decay": 0.01}]}],
        "config": {"preset": "default"}})
    writer = RunWriter(out, 0, StoreConfig())
    try:
        for first in range(0, steps, CHUNK):
            chunk = np.arange(first, min(first + CHUNK, steps))
            writer.write("stats", _stats_batch(rng, chunk, "grad", names))
            writer.write("stats", _stats_batch(rng, chunk[chunk % 5 == 0], "weight", names))
            writer.write("stats", _stats_batch(rng, chunk[chunk % 5 == 0], "update", names))
            writer.write("stats", _stats_batch(rng, chunk[chunk % 10 == 0], "activation", modules))
            times = start + chunk * 0.1
            loss = 3 * np.exp(-chunk / steps * 3) + rng.normal(0, 0.05, len(chunk))
            scalars = {"step": np.tile(chunk, 3), "mode": ["train"] * (3 * len(chunk)),
                       "name": ["loss"] * len(chunk) + ["lr"] * len(chunk) + ["gradprobe/overhead_ms"] * len(chunk),
                       "value": np.concatenate([loss, np.full(len(chunk), 1e-4), rng.uniform(1, 2, len(chunk))]),
                       "time": np.tile(times, 3)}
            writer.write("scalars", pa.RecordBatch.from_pydict(scalars, schema=SCHEMAS["scalars"]))
            evals = chunk[chunk % 1000 == 999]
            if len(evals):
                writer.write("scalars", pa.RecordBatch.from_pydict(
                    {"step": evals // 1000, "mode": ["eval"] * len(evals), "name": ["loss"] * len(evals),
                     "value": 3 * np.exp(-evals / steps * 3), "time": start + evals * 0.1 + 0.05},
                    schema=SCHEMAS["scalars"]))
            sampled = chunk[chunk % 10 == 0]
            system = {"time": [], "node": [], "device": [], "metric": [], "value": []}
            for device, metric in (("host", "cpu_percent"), ("host", "memory_used_bytes"), ("cpu0", "cpu_percent"),
                                   ("cpu1", "cpu_percent"), ("gpu0", "gpu_utilization_percent"),
                                   ("host", "disk_read_bytes_per_s"), ("host", "network_sent_bytes_per_s")):
                system["time"] += list(start + sampled * 0.1)
                system["node"] += ["node-0"] * len(sampled)
                system["device"] += [device] * len(sampled)
                system["metric"] += [metric] * len(sampled)
                system["value"] += list(rng.uniform(0, 100, len(sampled)))
            writer.write("system", pa.RecordBatch.from_pydict(system, schema=SCHEMAS["system"]))
            phases = {c: rng.uniform(0.01, 0.02, len(chunk)) for c in PHASE_COLUMNS if c != "total"}
            phases["total"] = sum(phases.values())
            writer.write("phases", pa.RecordBatch.from_pydict(
                {"step": chunk, "mode": ["train"] * len(chunk), "node": ["node-0"] * len(chunk), "time": times,
                 **phases}, schema=SCHEMAS["phases"]))
        for step in (steps // 3, steps // 2):
            writer.event({"type": "finding", "code": "GP102", "rule": "ExplodingGradient", "severity": "error",
                          "step": step, "mode": "train", "message": "synthetic", "tensors": [names[0]],
                          "evidence": {"l2": 1e4}})
    finally:
        writer.close(timeout=600)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "run")
        written = synthesise(out, args.steps, args.layers)
        write_report(out)  # warm-up: the page cache, plotly's imports
        started = time.perf_counter()
        report = write_report(out)
        seconds = time.perf_counter() - started
        run_bytes = sum(p.stat().st_size for p in out.rglob("*.parquet"))
        result = {"steps": args.steps, "layers": args.layers, "run_mb": round(run_bytes / 2**20, 1),
                  "synthesis_s": round(written, 1), "report_s": round(seconds, 2),
                  "report_mb": round(report.stat().st_size / 2**20, 2)}
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
