"""Per-tensor statistics in one fused native pass: tensor_stats(), diff_stats(), Stats."""

from ._layout import COUNT_FIELDS, FIELDS, HIST_BINS, HIST_EXP_MAX, HIST_EXP_MIN, hist_edges
from .api import backends, diff_stats, diff_stats_async, tensor_stats, tensor_stats_async, unavailable_backends
from .computer import PendingStats, StatsComputer
from .inputs import InputError
from .result import Stats, divided, merge

__all__ = [
    "COUNT_FIELDS", "FIELDS", "HIST_BINS", "HIST_EXP_MAX", "HIST_EXP_MIN", "InputError", "PendingStats", "Stats",
    "StatsComputer", "backends", "diff_stats", "diff_stats_async", "divided", "hist_edges", "merge", "tensor_stats",
    "tensor_stats_async", "unavailable_backends",
]
