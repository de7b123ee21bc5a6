"""The native core's ABI as Python sees it: every constant is read from gradprobe._core, which
exports it from the C++ headers (csrc/table_args.hpp, register_constants); nothing is written twice."""

from __future__ import annotations

import numpy as np

from .. import _core

FIELDS: tuple[str, ...] = tuple(_core.FIELDS)
COUNT_FIELDS: frozenset[str] = frozenset(_core.COUNT_FIELDS)

HIST_EXP_MIN: int = _core.HIST_EXP_MIN
HIST_EXP_MAX: int = _core.HIST_EXP_MAX
HIST_BINS: int = _core.HIST_BINS

# Input dtype codes (kernels/stats_math.hpp, enum DType).
DTYPE_CODES: dict[str, int] = dict(_core.DTYPE_CODES)

# Pair flags of the CPU-only fused post-step pass (kernels/work_plan.hpp).
COPY_A_TO_B: int = _core.COPY_A_TO_B
NO_HIST_FOR_A: int = _core.NO_HIST_FOR_A
ROW_OF_B: int = _core.ROW_OF_B

CPU_CHUNK: int = _core.CPU_CHUNK
GPU_CHUNK: int = _core.GPU_CHUNK


def _edges() -> np.ndarray:
    powers = np.ldexp(1.0, np.arange(HIST_EXP_MIN, HIST_EXP_MAX + 1))
    edges = np.concatenate(([0.0], powers, [np.inf]))
    edges.flags.writeable = False  # shared by every Stats
    return edges


_EDGES = _edges()


def hist_edges() -> np.ndarray:
    """Bin edges: 0, 2^HIST_EXP_MIN, ..., 2^HIST_EXP_MAX, +inf (HIST_BINS + 1 values); read-only."""
    return _EDGES
