"""The statistics of a list of tensors: one entry per tensor, in input order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._layout import COUNT_FIELDS, FIELDS, hist_edges

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Stats:
    """Per-tensor statistics as NumPy arrays of length n.

    l2, l1, min, max, mean and std (population) are over finite values only; with no finite
    value, min/max/mean/std are NaN and l1/l2 are 0. ``hist[i, j]`` counts finite non-zero
    values with ``hist_edges[j] <= |x| < hist_edges[j + 1]``, so
    ``hist.sum(1) + zeros + nans + infs == numel``.
    """

    numel: np.ndarray
    finite: np.ndarray
    l2: np.ndarray
    l1: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    zeros: np.ndarray
    nans: np.ndarray
    infs: np.ndarray
    hist: np.ndarray | None = None
    hist_edges: np.ndarray = field(default_factory=hist_edges)

    def __len__(self) -> int:
        return len(self.numel)

    @classmethod
    def from_table(cls, table: np.ndarray, hist: np.ndarray | None) -> Stats:
        """Builds from the native layout: (n, len(FIELDS)) float64 and (n, HIST_BINS) counts.

        Every column is a copy (the caller may reuse `table` and `hist`, see stats.computer.ScratchPool)."""
        columns = {
            name: (table[:, i].astype(np.int64) if name in COUNT_FIELDS else table[:, i].copy())
            for i, name in enumerate(FIELDS)
        }
        return cls(**columns, hist=None if hist is None else hist.astype(np.int64, copy=True))

    def table(self) -> np.ndarray:
        """The (n, len(FIELDS)) float64 table, in FIELDS order."""
        return np.stack([np.asarray(getattr(self, f), dtype=np.float64) for f in FIELDS], axis=1)

    def take(self, index: np.ndarray | Sequence[int]) -> Stats:
        """The rows at `index`, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Stats.from_table(self.table()[index], None if self.hist is None else self.hist[index])

    def to_pandas(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per tensor; `names` become the index when given."""
        import pandas as pd

        frame = pd.DataFrame({f: getattr(self, f) for f in FIELDS})
        if names is not None:
            if len(names) != len(self):
                raise ValueError(f"to_pandas: {len(names)} names for {len(self)} tensors")
            frame.index = pd.Index(list(names), name="tensor")
        return frame  # type: ignore[no-any-return]  # pandas-stubs types the constructor loosely


def merge(a: Stats, b: Stats) -> Stats:
    """Row-wise statistics of the union of a[i]'s and b[i]'s values (Chan's merge).

    Used to combine shards (FSDP, ranks) and, in tests, to check halves against the whole.
    """
    if len(a) != len(b):
        raise ValueError(f"merge: {len(a)} rows against {len(b)}")
    na, nb = a.finite.astype(np.float64), b.finite.astype(np.float64)
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a = np.where(na > 0, a.mean, 0.0)
        mean_b = np.where(nb > 0, b.mean, 0.0)
        m2 = np.where(na > 0, a.std**2 * na, 0.0) + np.where(nb > 0, b.std**2 * nb, 0.0)
        delta = mean_b - mean_a
        mean = np.where(n > 0, mean_a + delta * np.where(n > 0, nb / n, 0.0), np.nan)
        m2 = m2 + np.where(n > 0, delta**2 * na * nb / np.where(n > 0, n, 1.0), 0.0)
        std = np.where(n > 0, np.sqrt(m2 / np.where(n > 0, n, 1.0)), np.nan)
    hist = None if a.hist is None or b.hist is None else a.hist + b.hist
    return Stats(
        numel=a.numel + b.numel,
        finite=a.finite + b.finite,
        l2=np.sqrt(a.l2**2 + b.l2**2),
        l1=a.l1 + b.l1,
        min=np.fmin(a.min, b.min),
        max=np.fmax(a.max, b.max),
        mean=mean,
        std=std,
        zeros=a.zeros + b.zeros,
        nans=a.nans + b.nans,
        infs=a.infs + b.infs,
        hist=hist,
    )


def divided(stats: Stats, scale: float) -> Stats:
    """The statistics of x / scale from those of x: what a GradScaler's unscale gives.

    Exact for a power-of-two scale (GradScaler's default growth and backoff keep it one): every value
    keeps its mantissa, so each histogram bin moves by log2(scale) bins. The histogram is dropped
    (None) when it cannot be moved exactly: a scale that is not a power of two, or counts in an
    open end bin (below 2^HIST_EXP_MIN or at and above 2^HIST_EXP_MAX) that the shift would split.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"divided: the scale must be positive and finite, not {scale!r}")
    if scale == 1.0:
        return stats
    hist = None
    mantissa, exponent = math.frexp(scale)
    if stats.hist is not None and mantissa == 0.5:
        shift = exponent - 1  # scale == 2**shift: bin j holds what bin j + shift held
        top = stats.hist.shape[1] - 1
        below, above = stats.hist[:, 0], stats.hist[:, top]
        if not ((shift < 0 and below.any()) or (shift > 0 and above.any())):
            hist = np.zeros_like(stats.hist)
            targets = np.clip(np.arange(1, top) - shift, 0, top)
            np.add.at(hist.T, targets, stats.hist[:, 1:top].T)
            hist[:, 0] += below
            hist[:, top] += above
    return Stats(numel=stats.numel, finite=stats.finite, l2=stats.l2 / scale, l1=stats.l1 / scale,
                 min=stats.min / scale, max=stats.max / scale, mean=stats.mean / scale, std=stats.std / scale,
                 zeros=stats.zeros, nans=stats.nans, infs=stats.infs, hist=hist)
