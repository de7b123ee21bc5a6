"""The CPU pass with 1 and 2 threads, on a quiet machine and with busy processes competing for the
cores (issue 9 item 6: a descheduled OpenMP thread must not stall the pass).

Run: .venv/bin/python bench/busy_threads.py [competitors=2] [set=bert_base]
Prints the median and worst of 15 passes (all statistics + histogram) per case.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tensor_sets import pretraining_gradients  # noqa: E402
from gradprobe import _core  # noqa: E402
from gradprobe.stats.inputs import build_table  # noqa: E402


def main(competitors: int, tensor_set: str) -> None:
    tensors = pretraining_gradients(tensor_set)
    table = build_table(tensors)
    native = _core.TensorTable(table.a_ptrs, table.b_ptrs, table.numels, table.dtypes_a, table.dtypes_b,
                               table.a_rows, table.copy)
    out = np.empty((native.output_rows, _core.NUM_FIELDS))
    hist = np.empty((native.output_rows, _core.HIST_BINS), np.uint64)
    engine = _core.CpuEngine()

    def passes(threads: int, rounds: int = 15) -> tuple[float, float]:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            engine.run(native, out, hist, threads)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3, max(times) * 1e3

    print(f"{tensor_set}, cpu target {_core.cpu_path()}, {_core.max_threads()} OpenMP threads available")
    for busy in (0, competitors):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(0.3)
            for threads in (1, 2):
                median, worst = passes(threads)
                print(f"  {busy} busy processes, {threads} thread(s): median {median:.1f} ms, worst {worst:.1f} ms")
        finally:
            for p in spinners:
                p.kill()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2, sys.argv[2] if len(sys.argv) > 2 else "bert_base")
