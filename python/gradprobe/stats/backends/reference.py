"""Pure-torch float64 reference: slow, exact, any device. The oracle of the tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._layout import FIELDS, HIST_BINS, HIST_EXP_MIN
from ..inputs import Device, Table
from .base import Finished


def _as_torch(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype.name == "bfloat16":
            return torch.from_numpy(x.view(np.uint16).astype(np.int32) << 16).view(torch.float32).reshape(x.shape)
        return torch.from_numpy(np.ascontiguousarray(x))
    return torch.from_dlpack(x)


def reference_row(a: Any, b: Any = None) -> tuple[list[float], np.ndarray]:
    """The statistics row and histogram of a (or a - b) computed in float64 with torch."""
    import torch

    x = _as_torch(a).reshape(-1).to(torch.float64)
    if b is not None:
        x = x - _as_torch(b).reshape(-1).to(torch.float64)
    nans = torch.isnan(x)
    infs = torch.isinf(x)
    finite = x[~(nans | infs)]
    n = finite.numel()
    row = dict.fromkeys(FIELDS, 0.0)
    row["numel"] = x.numel()
    row["finite"] = n
    row["nans"] = int(nans.sum())
    row["infs"] = int(infs.sum())
    row["zeros"] = int((finite == 0).sum())
    if n:
        row["l2"] = float(torch.linalg.vector_norm(finite))
        row["l1"] = float(finite.abs().sum())
        row["min"] = float(finite.min())
        row["max"] = float(finite.max())
        row["mean"] = float(finite.mean())
        row["std"] = float(finite.std(correction=0))
    else:
        row["min"] = row["max"] = row["mean"] = row["std"] = float("nan")
    nonzero = finite[finite != 0].abs()
    exponent = torch.frexp(nonzero).exponent.to(torch.int64) - 1  # |x| in [2^e, 2^(e+1))
    bins = (exponent - HIST_EXP_MIN + 1).clamp(0, HIST_BINS - 1)
    hist = torch.bincount(bins.cpu(), minlength=HIST_BINS).numpy().astype(np.uint64)
    return [float(row[f]) for f in FIELDS], hist


class ReferenceBackend:
    name = "torch"

    def can_read(self, device: Device) -> bool:
        return True

    def launch(self, table: Table, device: Device, hist: bool) -> Finished:
        if len(table) and not table.a_objs:
            raise RuntimeError("the torch reference needs the tensor objects; build the table with build_table()")
        rows = len(table)
        out = np.empty((rows, len(FIELDS)), np.float64)
        counts = np.zeros((rows, HIST_BINS), np.uint64)
        for i in range(len(table)):
            b = None if table.b_objs is None else table.b_objs[i]
            out[i], counts[i] = reference_row(table.a_objs[i], b)
        return Finished(out, counts if hist else None)
