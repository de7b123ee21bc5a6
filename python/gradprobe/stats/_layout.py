"""Constants shared with the native core: output fields, histogram bins, dtype codes."""

from __future__ import annotations

import numpy as np

FIELDS: tuple[str, ...] = ("numel", "finite", "l2", "l1", "min", "max", "mean", "std", "zeros", "nans", "infs")
COUNT_FIELDS: frozenset[str] = frozenset({"numel", "finite", "zeros", "nans", "infs"})

HIST_EXP_MIN = -64
HIST_EXP_MAX = 64
HIST_BINS = HIST_EXP_MAX - HIST_EXP_MIN + 2

# Input dtype codes (kernels/stats_math.hpp, enum DType).
DTYPE_CODES: dict[str, int] = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}


def hist_edges() -> np.ndarray:
    """Bin edges: 0, 2^HIST_EXP_MIN, ..., 2^HIST_EXP_MAX, +inf (HIST_BINS + 1 values)."""
    powers = np.ldexp(1.0, np.arange(HIST_EXP_MIN, HIST_EXP_MAX + 1))
    return np.concatenate(([0.0], powers, [np.inf]))

