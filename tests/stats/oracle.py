"""Comparison of computed statistics with the float64 torch reference."""

from __future__ import annotations

import numpy as np

from gradprobe import Stats, tensor_stats

EXACT = ("numel", "finite", "zeros", "nans", "infs", "min", "max")


def reference(tensors, b=None) -> Stats:
    if b is None:
        return tensor_stats(tensors, backend="torch")
    from gradprobe import diff_stats

    return diff_stats(tensors, b, backend="torch")


def assert_stats_close(got: Stats, want: Stats, context: str = "", rtol: float = 2e-6, pair: bool = False) -> None:
    """Counts, min, max and histograms exactly; sums to rtol of their scale.

    pair: statistics of a - b, where the CPU fast path rounds a difference once to float32 when
    it is not exact: min and max are then compared to 2^-23 relative (counts and bins stay exact).

    mean is compared against the spread of the data (rms), since a mean near 0 has no
    meaningful relative error; std and the norms relative to themselves.
    """
    assert len(got) == len(want), context
    for name in EXACT:
        g, w = getattr(got, name), getattr(want, name)
        if pair and name in ("min", "max"):
            close = np.isclose(g, w, rtol=2.0**-23, atol=0) | (np.isnan(g) & np.isnan(w))
            assert close.all(), f"{context}: {name} differs beyond float32 rounding: {g[~close][:5]} vs {w[~close][:5]}"
            continue
        bad = ~((g == w) | (np.isnan(g) & np.isnan(w)))
        assert not bad.any(), f"{context}: {name} differs at rows {np.flatnonzero(bad)[:5]}: {g[bad][:5]} vs {w[bad][:5]}"
    with np.errstate(over="ignore"):
        rms = np.hypot(np.nan_to_num(want.mean), np.nan_to_num(want.std))
    for name, scale in (("l1", np.abs(want.l1)), ("l2", np.abs(want.l2)), ("std", rms), ("mean", rms)):
        g, w = getattr(got, name), getattr(want, name)
        same = (np.isnan(g) & np.isnan(w)) | (g == w)  # equal infinities (overflowing sums) included
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.where(same, 0.0, np.abs(g - w))
        limit = rtol * scale + 1e-300
        bad = ~(err <= limit)
        assert not bad.any(), (f"{context}: {name} off at rows {np.flatnonzero(bad)[:5]}: got {g[bad][:5]} "
                               f"want {w[bad][:5]} (limit {limit[bad][:5]})")
    if got.hist is not None and want.hist is not None:
        bad = (got.hist != want.hist).any(axis=1)
        assert not bad.any(), f"{context}: histogram differs at rows {np.flatnonzero(bad)[:5]}"
        total = got.hist.sum(axis=1) + got.zeros + got.nans + got.infs
        assert (total == got.numel).all(), f"{context}: histogram + zeros + nans + infs != numel"
