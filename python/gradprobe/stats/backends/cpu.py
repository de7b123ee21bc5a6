"""The C++ CPU twin (gradprobe._core): OpenMP over chunks, SIMD target chosen at run time for this CPU."""

from __future__ import annotations

import threading
import warnings

import numpy as np

from ... import _core
from .._layout import FIELDS, HIST_BINS
from ..inputs import Device, Table
from ..post_step import PostStepTable
from .base import Finished


def cpu_target() -> str:
    """Which SIMD target the CPU pass takes on this machine, and why (docs/cpu_dispatch.md), e.g.
    "cpu target avx2: the best of the compiled targets this CPU supports (avx512 needs AVX-512 F, BW,
    DQ and VL)". gradprobe._core.cpu_targets() lists every compiled target and whether this CPU has it.
    The environment variable GRADPROBE_CPU_TARGET (a target's name) sets the default target."""
    return _core.cpu_path_reason()


class CpuBackend:
    """Synchronous: gradients must be read before the optimizer changes them, so the pass
    runs on the caller's thread (with the GIL released)."""

    name = "cpu"

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        reason = _core.cpu_path_reason()
        if "GRADPROBE_CPU_TARGET=" in reason:  # a target asked for in the environment was not taken
            warnings.warn(f"gradprobe: {reason}", RuntimeWarning, stacklevel=2)
        self._engine = _core.CpuEngine()
        self._post_step = _core.PostStepEngine()
        self._lock = threading.Lock()  # the engine's workspace is reused across calls

    def can_read(self, device: Device) -> bool:
        return device[0] == "cpu"

    def launch(self, table: Table, device: Device, hist: bool) -> Finished:
        out, counts = _outputs(len(table), hist)
        with self._lock:
            self._engine.run(native_table(table), out, counts, self.threads)
        return Finished(out, counts)

    def launch_post_step(self, table: PostStepTable, hist: bool) -> Finished:
        """The fused post-step operation (stats.post_step): one read of each array."""
        flat, snapshot_rows, pair_flags = table.native_arrays()
        native = _core.PostStepTable(native_table(flat), snapshot_rows, pair_flags)
        out, counts = _outputs(table.output_rows, hist)
        with self._lock:
            self._post_step.run(native, out, counts, self.threads)
        return Finished(out, counts)


def native_table(table: Table) -> _core.TensorTable:
    return _core.TensorTable(table.a_ptrs, table.b_ptrs, table.numels, table.dtypes_a, table.dtypes_b)


def _outputs(rows: int, hist: bool) -> tuple[np.ndarray, np.ndarray | None]:
    return np.empty((rows, len(FIELDS)), np.float64), np.empty((rows, HIST_BINS), np.uint64) if hist else None


class SlotLaunch(Finished):
    """Results in a slot of a native CaptureSet (the probe's fused CPU measurement): read in place;
    release() frees the slot for a later call."""

    def __init__(self, capture_set: _core.CaptureSet, index: int) -> None:
        table, hist, present = capture_set.slot(index)
        super().__init__(table, hist)
        self.present = present
        self._set: _core.CaptureSet | None = capture_set
        self._index = index

    def release(self) -> None:
        if self._set is not None:
            self._set.release(self._index)
            self._set = None
