"""A fixed list of parameters read each step into the kernels' raw table without per-tensor Python.

The layout (element counts, dtypes, devices) is cached; each step the native gather reads the
current data pointers (of the parameters or of their .grad) and the layout again, and a change
(a resized embedding, model.half(), .to(device)) is noticed by one array comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import _core
from ..stats._layout import DTYPE_CODES
from ..stats.inputs import Table

_CODES = {torch.float32: DTYPE_CODES["float32"], torch.float16: DTYPE_CODES["float16"],
          torch.bfloat16: DTYPE_CODES["bfloat16"], torch.float64: DTYPE_CODES["float64"]}


@dataclass
class Gathered:
    """One step's read of the table: rows with a tensor, and which rows had none."""

    table: Table
    rows: np.ndarray  # indices (into the parameter list) of the rows in `table`
    present: np.ndarray  # per parameter: whether it had a tensor this step
    layout_changed: bool


class TensorTable:
    def __init__(self, params: Sequence[torch.nn.Parameter]) -> None:
        self.params = list(params)
        n = len(self.params)
        self._ptrs = np.zeros(n, np.int64)
        self._numels = np.zeros(n, np.int64)
        self._dtypes = np.zeros(n, np.int32)
        self._devices = np.zeros(n, np.int32)
        self._layout: tuple[np.ndarray, np.ndarray, np.ndarray] = (
            np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(n, np.int32))
        self._known = np.zeros(n, bool)  # rows whose layout has been seen (a gradient may appear late)

    def __len__(self) -> int:
        return len(self.params)

    def gather(self, attr: str | None) -> Gathered:
        """Reads the parameters (attr=None) or their gradients (attr='grad')."""
        _core.gather_tensors(self.params, attr, _CODES, self._ptrs, self._numels, self._dtypes, self._devices)
        present = self._ptrs != 0
        present |= (self._numels == 0) & (self._dtypes >= 0)  # empty tensors may have a null pointer
        unsupported = present & (self._dtypes < 0)
        present &= ~unsupported  # integer or other dtypes are not measured
        # Parameters and their gradients share one layout: compare rows seen before, learn new ones.
        seen = present & self._known
        current: tuple[np.ndarray, np.ndarray, np.ndarray] = (self._numels, self._dtypes, self._devices)
        changed = not all(np.array_equal(a[seen], b[seen]) for a, b in zip(current, self._layout))
        new = present & ~self._known
        if new.any():
            for cached, now in zip(self._layout, current):
                cached[new] = now[new]
            self._known |= new
        rows = np.flatnonzero(present)
        dtypes = self._dtypes[rows]
        table = Table(self._ptrs[rows], np.zeros(rows.size, np.int64), self._numels[rows], dtypes, dtypes,
                      self._devices[rows], "torch", [], None)
        return Gathered(table, rows, present, changed)
