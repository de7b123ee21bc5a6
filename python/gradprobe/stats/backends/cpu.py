"""The C++ CPU twin (gradprobe._core): OpenMP over chunks, AVX-512 where present."""

from __future__ import annotations

import threading

import numpy as np

from ... import _core
from .._layout import FIELDS, HIST_BINS
from ..inputs import Device, Table
from ..post_step import PostStepTable
from .base import Finished


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
        native = _core.TensorTable(table.a_ptrs, table.b_ptrs, table.numels, table.dtypes_a, table.dtypes_b)
        return self._run(native, len(table), hist)

    def launch_post_step(self, table: PostStepTable, hist: bool) -> Finished:
        """The fused post-step operation (stats.post_step): one read of each array."""
        flat, snapshot_rows, pair_flags = table.native_arrays()
        native = _core.TensorTable(flat.a_ptrs, flat.b_ptrs, flat.numels, flat.dtypes_a, flat.dtypes_b,
                                   snapshot_rows, pair_flags)
        return self._run(native, table.output_rows, hist)

    def _run(self, native: _core.TensorTable, rows: int, hist: bool) -> Finished:
        out = np.empty((rows, len(FIELDS)), np.float64)
        counts = np.empty((rows, HIST_BINS), np.uint64) if hist else None
        with self._lock:
            self._engine.run(native, out, counts, self.threads)
        return Finished(out, counts)
