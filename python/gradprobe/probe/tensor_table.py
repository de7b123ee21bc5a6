"""A fixed list of parameters read each step into the kernels' raw table without per-tensor Python.

The native gather reads each row's pointer, element count, dtype, device, a layout key (shape,
strides) and a status: dense and inside its storage (read in place), strided but
not dense (a slice with steps, an expanded frozen parameter: copied into a buffer kept for that
row), outside its storage or unsupported (sparse, meta, freed storage, integer or quantized dtypes:
skipped, and named once in `Gathered.skipped`). The storage check is native and only redone when a
row's pointer or layout key changed. A changed key of a row seen before (a resized embedding,
model.half(), param.data replaced) is reported as `layout_changed`, and the owner rebuilds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import _core, torch_bridge
from ..stats._layout import DTYPE_CODES
from ..stats.backends.cpu import SlotLaunch
from ..stats.inputs import Table

AttrPath = str | tuple[str, ...] | None  # what a row reads: the parameter, or an attribute (path) of it
_CODES = {torch.float32: DTYPE_CODES["float32"], torch.float16: DTYPE_CODES["float16"],
          torch.bfloat16: DTYPE_CODES["bfloat16"], torch.float64: DTYPE_CODES["float64"]}
STATUS = _core.GATHER_STATUS
IN_PLACE, NEEDS_COPY = STATUS["in_place"], STATUS["needs_copy"]
torch_bridge.install()  # torch is imported here: read tensors through libtorch when built for this torch
_REASONS = {STATUS["outside"]: "its strides reach outside its storage",
            STATUS["unsupported"]: "it has no readable dense data (sparse, meta, freed storage) or an "
                                   "unsupported dtype (float16, bfloat16, float32, float64 are measured)"}


@dataclass
class Gathered:
    """One step's read of the table: rows with a tensor, and which rows had none."""

    table: Table
    rows: np.ndarray  # indices (into the parameter list) of the rows in `table`
    present: np.ndarray  # per parameter: whether it had a readable tensor this step
    layout_changed: bool
    in_place: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per row of `table`: read in place
    skipped: dict[int, str] = field(default_factory=dict)  # parameter index -> why, the first time only
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per row of `table`: layout key


class TensorTable:
    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.params = list(params)
        n = len(self.params)
        self._ptrs = np.zeros(n, np.int64)
        self._numels = np.zeros(n, np.int64)
        self._dtypes = np.zeros(n, np.int32)
        self._devices = np.zeros(n, np.int32)
        self._keys = np.zeros(n, np.int64)
        self._status = np.zeros(n, np.int32)
        self._layout: tuple[np.ndarray, np.ndarray] = (np.zeros(n, np.int64), np.zeros(n, np.int32))
        self._known = np.zeros(n, bool)  # rows whose layout has been seen (a gradient may appear late)
        self._reported = np.zeros(n, bool)  # rows already named as skipped
        self._copies: dict[int, torch.Tensor] = {}  # row -> contiguous buffer for a non-dense tensor
        self._capture_sets: dict[AttrPath, _core.CaptureSet] = {}

    def __len__(self) -> int:
        return len(self.params)

    def gather(self, attr: AttrPath) -> Gathered:
        """Reads the parameters (attr=None), their gradients (attr='grad') or what a path of
        attributes leads to (('grad', '_local_tensor'): an FSDP rank's shard of the gradient)."""
        _core.gather_tensors(self.params, attr, _CODES, self._ptrs, self._numels, self._dtypes, self._devices,
                             self._keys, self._status)
        status = self._status
        present = (status == IN_PLACE) | (status == NEEDS_COPY)
        refused = status > NEEDS_COPY
        skipped: dict[int, str] = {}
        if refused.any():
            for i in np.flatnonzero(refused & ~self._reported):
                skipped[int(i)] = _REASONS[int(status[i])]
            self._reported |= refused
        # Parameters and their gradients share one layout: compare rows seen before, learn new ones.
        seen = present & self._known
        current: tuple[np.ndarray, np.ndarray] = (self._keys, self._devices)
        changed = not all(np.array_equal(a[seen], b[seen]) for a, b in zip(current, self._layout))
        new = present & ~self._known
        if new.any():
            for cached, now in zip(self._layout, current):
                cached[new] = now[new]
            self._known |= new
        rows = np.flatnonzero(present)
        ptrs = self._ptrs[rows]
        objs: list[torch.Tensor | None] = []
        copy_rows = np.flatnonzero(status[rows] == NEEDS_COPY)
        if copy_rows.size:  # rare (non-dense parameters): read through a contiguous copy of each
            objs = [None] * rows.size
            for j in copy_rows:
                copy = objs[j] = self._copy(int(rows[j]), attr)
                ptrs[j] = copy.data_ptr()
        dtypes = self._dtypes[rows]
        table = Table(ptrs, np.zeros(rows.size, np.int64), self._numels[rows], dtypes, dtypes,
                      self._devices[rows], "torch", objs, None)
        return Gathered(table, rows, present, changed, status[rows] == IN_PLACE, skipped, self._keys[rows])

    def measure_cpu(self, attr: AttrPath, histogram: bool, threads: int) -> SlotLaunch | None:
        """The fast path: gather and CPU pass in one native call (_core.CaptureSet). None when a row
        needs what gather() handles (a copy, a refusal, a layout change, a GPU tensor) or no result
        slot is free: then use gather()."""
        capture = self._capture_sets.get(attr)
        if capture is None:
            capture = self._capture_sets[attr] = _core.CaptureSet(self.params, attr, _CODES)
        index = capture.run(histogram, threads)
        return SlotLaunch(capture, index) if index >= 0 else None

    def versions(self, attr: AttrPath) -> np.ndarray:
        """Each row's (version counter, data pointer), shape (n, 2); (-1, 0) where there is no tensor.
        Equal arrays at two moments mean no row was replaced or changed in place in between."""
        versions, ptrs = np.empty(len(self.params), np.int64), np.empty(len(self.params), np.int64)
        _core.tensor_versions(self.params, attr, versions, ptrs)
        return np.stack([versions, ptrs], axis=1)

    def _copy(self, row: int, attr: AttrPath) -> torch.Tensor:
        tensor = self.params[row]
        for name in (() if attr is None else (attr,) if isinstance(attr, str) else attr):
            tensor = getattr(tensor, name)
        buffer = self._copies.get(row)
        if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype \
                or buffer.device != tensor.device:
            buffer = self._copies[row] = torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device)
        with torch.no_grad():
            buffer.copy_(tensor.detach())
        return buffer
