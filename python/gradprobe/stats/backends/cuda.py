"""The compiled CUDA kernels (gradprobe._cuda): one launch per device per call, results through
pinned memory, never a host synchronisation at launch."""

from __future__ import annotations

import numpy as np

from ..inputs import Device, Table


def load_module():
    """The _cuda module and why it cannot run here (None when it can)."""
    try:
        from ... import _cuda  # type: ignore[attr-defined]
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
    def __init__(self, engine, slot: int, table: Table) -> None:
        self._engine, self._slot = engine, slot
        self._table = table  # keeps the inputs (and any copies) alive until the results are read
        self._released = False

    def done(self) -> bool:
        return self._released or self._engine.ready(self._slot)

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

    def __init__(self) -> None:
        module, reason = load_module()
        if reason is not None:
            raise RuntimeError(reason)
        self._module = module
        self._engines: dict[int, object] = {}

    def can_read(self, device: Device) -> bool:
        return device[0] == "cuda"

    def engine(self, index: int):
        engine = self._engines.get(index)
        if engine is None:
            engine = self._engines[index] = self._module.CudaEngine(index)
        return engine

    def launch(self, table: Table, device: Device, hist: bool) -> CudaLaunch:
        engine = self.engine(device[1])
        native = self._module.TensorTable(table.a_ptrs, table.b_ptrs, table.numels, table.dtypes_a, table.dtypes_b)
        slot = engine.launch(native, current_stream(table, device[1]), hist)
        return CudaLaunch(engine, slot, table)
