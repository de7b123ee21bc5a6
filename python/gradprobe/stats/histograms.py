"""Operations on exponent-histogram tables (n rows x HIST_BINS counts) done natively: per row they
are loops over 130 bins, which NumPy would run as several passes over the whole table."""

from __future__ import annotations

import numpy as np

from .. import _core


def sparse_hist_rows(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first non-zero bin per row (int16), offsets (int32, rows + 1), the counts from each row's first
    to its last non-zero bin, concatenated (int64)); an all-zero row is empty with first bin 0."""
    return _core.compact_hist(np.ascontiguousarray(hist, dtype=np.int64))
