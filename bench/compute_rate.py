"""The CPU pass's compute-bound rate per target: ns per element per core on an L3-resident set.

Memory-bound figures (bench/test_stats_cpu.py) say how close the pass is to the read floor; this
says how fast it computes when memory is not the limit, i.e. from which memory bandwidth on a
machine the pass becomes compute-bound (2 threads x 1/rate elements per ns).

    .venv/bin/python bench/compute_rate.py [target,target,...]   # default: every supported target
"""

from __future__ import annotations

import sys
import time

import torch

from gradprobe import _core, tensor_stats

ELEMENTS = 1 << 18  # per tensor; 8 tensors: 8 MB of float32, resident in a 32 MB L3
TENSORS = 8
REPEATS = 200


def rate(tensors: list[torch.Tensor], histogram: bool) -> float:
    """ns per element per core (the pass runs on every core; best of REPEATS)."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        tensor_stats(tensors, histogram=histogram, backend="cpu")
        best = min(best, time.perf_counter() - started)
    return best / (TENSORS * ELEMENTS) * 1e9 * torch.get_num_threads()


def main() -> None:
    torch.manual_seed(0)
    f32 = [torch.randn(ELEMENTS) * 1e-3 for _ in range(TENSORS)]
    bf16 = [t.bfloat16() for t in f32]
    supported = [name for name, ok, _ in _core.cpu_targets() if ok and name != "exact"]
    targets = sys.argv[1].split(",") if len(sys.argv) > 1 else supported
    for _ in range(100):  # threads and clocks up
        tensor_stats(f32, backend="cpu")
    print(f"ns per element per core, {torch.get_num_threads()} threads, {TENSORS} x {ELEMENTS} elements")
    for target in targets:
        _core.set_cpu_path(target)
        cells = [f"{name} {rate(ts, hist):.3f}" for name, ts, hist in
                 (("f32", f32, False), ("f32+hist", f32, True), ("bf16", bf16, False), ("bf16+hist", bf16, True))]
        print(f"{target:12s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
