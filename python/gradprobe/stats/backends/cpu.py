"""The C++ CPU twin (gradprobe._core): OpenMP over chunks, SIMD target chosen at run time for this CPU."""

from __future__ import annotations

import threading

import numpy as np

from ... import _core
from .._layout import FIELDS, HIST_BINS
from ..inputs import Device, Table
from .base import Finished


def cpu_target() -> str:
    """Which SIMD target the CPU pass takes on this machine, and why (docs/cpu_dispatch.md), e.g.
    "cpu target avx2: the best of the compiled targets this CPU supports (avx512 needs AVX-512 F, BW,
    DQ and VL)". gradprobe._core.cpu_targets() lists every compiled target and whether this CPU has it."""
    return _core.cpu_path_reason()


class CpuBackend:
    """Synchronous: gradients must be read before the optimizer changes them, so the pass
    runs on the caller's thread (with the GIL released)."""

    name = "cpu"

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._engine = _core.CpuEngine()
        self._lock = threading.Lock()  # the engine's workspace is reused across calls

    def can_read(self, device: Device) -> bool:
        return device[0] == "cpu"

    def launch(self, table: Table, device: Device, hist: bool) -> Finished:
        native = _core.TensorTable(table.a_ptrs, table.b_ptrs, table.numels, table.dtypes_a, table.dtypes_b,
                                   table.a_rows, table.copy)
        rows = native.output_rows
        out = np.empty((rows, len(FIELDS)), np.float64)
        counts = np.empty((rows, HIST_BINS), np.uint64) if hist else None
        with self._lock:
            self._engine.run(native, out, counts, self.threads)
        return Finished(out, counts)
