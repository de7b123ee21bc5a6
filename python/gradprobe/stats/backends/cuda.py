"""The compiled CUDA kernels (gradprobe._cuda): one launch per device per call, results through
pinned memory, never a host synchronisation at launch.

Bounded pinned memory: each engine keeps at most `max_slots` result slots. While every slot holds
an unread result, a launch raises ResultsRingFull at once (nothing is launched and nothing waits):
read or discard earlier PendingStats. The probe counts such launches as dropped.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..inputs import Device, Table
from .base import ResultsRingFull
from .cpu import native_table  # _core's TensorTable: _cuda takes it (pybind11 types are shared)


def load_module() -> tuple[ModuleType | None, str | None]:
    """The _cuda module and why it cannot run here (None when it can)."""
    try:
        from ... import _cuda
    except ImportError as error:
        return None, f"gradprobe was built without CUDA ({error})"
    status = _cuda.status()
    return _cuda, None if status["usable"] else status["reason"]


def current_stream(table: Table, index: int) -> int:
    """The stream the inputs' producers run on: torch's current stream, else CuPy's."""
    if table.source in ("torch", "mixed"):
        import torch

        return int(torch.cuda.current_stream(index).cuda_stream)
    import cupy

    with cupy.cuda.Device(index):
        return int(cupy.cuda.get_current_stream().ptr)


class CudaLaunch:
    def __init__(self, engine: Any, slot: int, table: Table) -> None:
        self._engine, self._slot = engine, slot
        self._table: Table | None = table  # keeps the inputs (and any copies) alive until the results are read
        self._released = False

    def done(self) -> bool:
        return self._released or bool(self._engine.ready(self._slot))

    def read(self, out: np.ndarray, hist: np.ndarray | None) -> None:
        self._engine.read(self._slot, out, hist)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._engine.release(self._slot)
            self._table = None

    def __del__(self) -> None:
        self.release()


class CudaBackend:
    name = "cuda"

    def __init__(self, max_slots: int | None = None) -> None:
        module, reason = load_module()
        if module is None or reason is not None:
            raise RuntimeError(reason)
        self._module = module
        self._max_slots = max_slots
        self._engines: dict[int, Any] = {}

    def can_read(self, device: Device) -> bool:
        return device[0] == "cuda"

    def engine(self, index: int) -> Any:
        engine = self._engines.get(index)
        if engine is None:
            args = () if self._max_slots is None else (self._max_slots,)
            engine = self._engines[index] = self._module.CudaEngine(index, *args)
        return engine

    def launch(self, table: Table, device: Device, hist: bool) -> CudaLaunch:
        engine = self.engine(device[1])
        slot = int(engine.launch(native_table(table), current_stream(table, device[1]), hist))
        if slot < 0:
            raise ResultsRingFull(f"cuda:{device[1]}: all {engine.max_slots} result slots hold unread results; "
                                  "read or discard earlier PendingStats")
        return CudaLaunch(engine, slot, table)
