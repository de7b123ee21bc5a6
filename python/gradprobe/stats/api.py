"""The public statistics functions, backed by one process-wide StatsComputer made on first use."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from .computer import PendingStats, StatsComputer
from .result import Stats


@functools.lru_cache(maxsize=1)
def default_computer() -> StatsComputer:
    return StatsComputer()


def tensor_stats_async(tensors: Sequence[Any], *, histogram: bool = True, backend: str | None = None) -> PendingStats:
    """Starts the statistics of every tensor in one fused pass per device; never blocks on CUDA."""
    return default_computer().launch(tensors, None, histogram=histogram, backend=backend)


def tensor_stats(tensors: Sequence[Any], *, histogram: bool = True, backend: str | None = None) -> Stats:
    """Statistics of every tensor (NumPy arrays of length n, in input order).

    tensors: torch tensors (CPU or CUDA, mixed devices grouped per device), NumPy or CuPy arrays,
    or any DLPack-capable array, of dtype float16, bfloat16, float32 or float64.
    backend: None picks the best per device ("cuda", else "cupy", else "torch" for GPUs; "cpu" for
    host memory); or name one of gradprobe.backends().
    """
    return tensor_stats_async(tensors, histogram=histogram, backend=backend).result()


def diff_stats_async(a: Sequence[Any], b: Sequence[Any], *, histogram: bool = True,
                     backend: str | None = None) -> PendingStats:
    """Starts the statistics of a[i] - b[i], computed in float64 without materialising the difference."""
    return default_computer().launch(a, b, histogram=histogram, backend=backend)


def diff_stats(a: Sequence[Any], b: Sequence[Any], *, histogram: bool = True, backend: str | None = None) -> Stats:
    """Statistics of a[i] - b[i] (e.g. weight updates), without materialising a - b."""
    return diff_stats_async(a, b, histogram=histogram, backend=backend).result()


def backends() -> list[str]:
    """The backends usable on this machine, best first."""
    return default_computer().available()


def unavailable_backends() -> dict[str, str]:
    """The backends that cannot run here, each with the reason (e.g. no CUDA driver)."""
    return default_computer().unavailable()
