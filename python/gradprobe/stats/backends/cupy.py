"""The kernels/ sources compiled at run time through CuPy (NVRTC), for installs built without nvcc."""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

from ... import _core
from .._layout import FIELDS, HIST_BINS
from ..inputs import Device, Table
from .cuda import current_stream

# The TensorDesc layout as the native core reports it (sizeof/offsetof); the field types follow from
# the sizes. tests/stats/test_native_abi.py checks this mirror against the core.
_POINTERS = ("a", "b")  # u64; every other field is a signed integer
TENSOR_DESC = np.dtype({"names": list(_core.TENSOR_DESC_FIELDS),
                        "formats": [f"<{'u' if name in _POINTERS else 'i'}{size}"
                                    for name, (_, size) in _core.TENSOR_DESC_FIELDS.items()],
                        "offsets": [offset for offset, _ in _core.TENSOR_DESC_FIELDS.values()],
                        "itemsize": _core.TENSOR_DESC_SIZE})
GPU_CHUNK: int = _core.GPU_CHUNK
PARTIAL_DOUBLES: int = _core.PARTIAL_DOUBLES
# kBlockThreads lives in the device-only kernels/stats_kernels.cuh, which the host-compiled core
# cannot include: written twice, compared by tests/stats/test_native_abi.py.
BLOCK_THREADS = 512


def kernels_dir() -> str:
    return str(resources.files("gradprobe") / "kernels")


def availability() -> str | None:
    """None when CuPy can run the kernels here, else why not."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "CuPy sees no CUDA device"
    except Exception as error:  # CUDARuntimeError without a driver
        return f"CuPy cannot reach a GPU ({error})"
    return None


class CupyLaunch:
    def __init__(self, event: Any, out: Any, hist: Any, table: Table) -> None:
        self._event, self._out, self._hist = event, out, hist
        self._table: Table | None = table  # keeps the inputs alive until the results are read

    def done(self) -> bool:
        return bool(self._event.done)

    def read(self, out: np.ndarray, hist: np.ndarray | None) -> None:
        self._event.synchronize()
        out[...] = self._out.get()
        if hist is not None and self._hist is not None:
            hist[...] = self._hist.get()

    def release(self) -> None:
        self._table = None


class CupyBackend:
    name = "cupy"

    def __init__(self) -> None:
        reason = availability()
        if reason is not None:
            raise RuntimeError(reason)
        import cupy

        self._cupy = cupy
        self._kernels: dict[int, object] = {}

    def can_read(self, device: Device) -> bool:
        return device[0] == "cuda"

    def kernel(self, index: int) -> Any:
        kernel = self._kernels.get(index)
        if kernel is None:
            with self._cupy.cuda.Device(index):
                module = self._cupy.RawModule(code='#include "stats_kernels.cuh"\n',
                                              options=("-std=c++17", f"-I{kernels_dir()}"))
                kernel = self._kernels[index] = module.get_function("gp_stats_kernel")
        return kernel

    def launch(self, table: Table, device: Device, hist: bool) -> CupyLaunch:
        cp = self._cupy
        n = len(table)
        first, num, tasks = _core.plan(table.numels, GPU_CHUNK)
        desc = np.zeros(n, TENSOR_DESC)
        desc["a"], desc["b"], desc["numel"] = table.a_ptrs, table.b_ptrs, table.numels
        desc["dtype_a"], desc["dtype_b"] = table.dtypes_a, table.dtypes_b
        desc["first_task"], desc["num_tasks"] = first, num
        kernel = self.kernel(device[1])
        with cp.cuda.Device(device[1]), cp.cuda.ExternalStream(current_stream(table, device[1])) as stream:
            m = max(len(tasks), 1)
            d_desc = cp.asarray(desc.view(np.uint8))
            d_tasks = cp.asarray(np.ascontiguousarray(tasks, dtype=np.int64))
            partials = cp.empty(m * PARTIAL_DOUBLES, cp.float64)
            partial_hist = cp.empty(m * HIST_BINS, cp.uint32)
            counters = cp.zeros(max(n, 1), cp.uint32)
            out = cp.empty((n, len(FIELDS)), cp.float64)
            out_hist = cp.zeros((n, HIST_BINS), cp.uint64)
            if len(tasks):
                grid = min(len(tasks), 8 * cp.cuda.Device(device[1]).attributes["MultiProcessorCount"])
                kernel((grid,), (BLOCK_THREADS,),
                       (d_desc, d_tasks, np.int64(len(tasks)), partials, partial_hist, counters, out, out_hist,
                        np.int32(1 if hist else 0)))
            event = stream.record()
        return CupyLaunch(event, out, out_hist if hist else None, table)
