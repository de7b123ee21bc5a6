"""Benchmark plumbing: timing interleaved with the read floor, and the summary table.

Run: bash bench/run_cpu.sh   (or: python -m pytest bench -m "not gpu" --benchmark-only)
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from tests.conftest import pytest_collection_modifyitems  # noqa: F401  (skips `gpu` items without a GPU)

OUT = Path(os.environ.get("GRADPROBE_BENCH_OUT", Path(__file__).parent / "out"))


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def interleaved(fn, floor, args, rounds: int) -> tuple[float, float, float]:
    """Median method time, median floor time and median per-round ratio, alternating the two so
    that drift in the machine's speed hits both alike."""
    fn(*args)
    floor(*args)
    pairs = []
    for _ in range(rounds):
        f = timed(floor, *args)
        m = timed(fn, *args)
        pairs.append((m, f))
    return (statistics.median(m for m, _ in pairs), statistics.median(f for _, f in pairs),
            statistics.median(m / f for m, f in pairs))


class Results:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, **row) -> None:
        self.rows.append(row)

    def table(self) -> str:
        if not self.rows:
            return ""
        lines = ["| set | method | time (ms) | x floor | floor (ms) | note |", "|---|---|---:|---:|---:|---|"]
        for r in self.rows:
            lines.append(f"| {r['set']} | {r['method']} | {r['ms']:.3f} | {r['ratio']:.2f} | {r['floor_ms']:.3f} | "
                         f"{r.get('note', '')} |")
        by_set: dict[str, dict[str, float]] = {}
        for r in self.rows:
            by_set.setdefault(r["set"], {})[r["method"]] = r["ms"]
        for name, methods in by_set.items():
            for fast in ("gradprobe_cpu_hist", "gradprobe_cuda_hist"):
                if fast in methods and "naive_torch_loop" in methods:
                    lines.append(f"\n{name}: naive loop / {fast} = {methods['naive_torch_loop'] / methods[fast]:.1f}x")
        return "\n".join(lines)


_RESULTS = Results()


@pytest.fixture(scope="session")
def results() -> Results:
    return _RESULTS


def pytest_sessionfinish(session, exitstatus):
    text = _RESULTS.table()
    if text:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "stats_table.md").write_text(text + "\n")
        print("\n\n" + text)
