"""Down-sampling of long step series, so a 100k-step run stays a few MB and every spike stays visible."""

from __future__ import annotations

import numpy as np

# Points per line and columns per heatmap: enough to read on a wide screen, small enough to embed.
MAX_LINE_POINTS = 4000
MAX_COLUMNS = 600


def envelope(x: np.ndarray, y: np.ndarray, max_points: int = MAX_LINE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ~max_points of (x, y), x sorted: each bucket keeps its minimum and its maximum, so a
    one-step spike or dip survives (a plain stride would drop it)."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    if len(x) <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, len(x), buckets + 1).astype(np.int64)
    keep = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        chunk = y[lo:hi]
        finite = np.isfinite(chunk)
        if not finite.any():
            keep.append(lo)  # a NaN stretch stays a gap
            continue
        values = np.where(finite, chunk, np.nan)
        keep.extend(sorted({lo + int(np.nanargmin(values)), lo + int(np.nanargmax(values))}))
    index = np.array(keep, dtype=np.int64)
    return x[index], y[index]


def step_columns(steps: np.ndarray, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """(column of each distinct step, first step of each column): distinct steps grouped into at most
    max_columns consecutive columns of equal step width."""
    steps = np.asarray(steps, dtype=np.int64)
    distinct = np.unique(steps)
    if len(distinct) <= max_columns:
        return np.searchsorted(distinct, steps), distinct
    lo, hi = int(distinct[0]), int(distinct[-1])
    width = -(-(hi - lo + 1) // max_columns)  # ceiling: every column spans `width` steps
    columns = (steps - lo) // width
    used = np.unique(columns)
    return np.searchsorted(used, columns), lo + used * width


def column_max(columns: np.ndarray, rows: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (rows x columns) grid of the largest finite value per cell (NaN where none): the worst
    step of a column is the one to see."""
    grid = np.full(shape, -np.inf)
    finite = np.isfinite(values)
    np.maximum.at(grid, (rows[finite], columns[finite]), values[finite])
    grid[np.isneginf(grid)] = np.nan
    return grid
