"""gradprobe: an in-process debugger and profiler for PyTorch training.

The core is a native fused pass that computes per-tensor statistics of gradients, weights,
updates and activations for every tensor at once, with no host-device synchronisation.
"""

from .stats import (
    FIELDS,
    HIST_BINS,
    InputError,
    PendingStats,
    Stats,
    StatsComputer,
    backends,
    diff_stats,
    diff_stats_async,
    hist_edges,
    merge,
    tensor_stats,
    tensor_stats_async,
    unavailable_backends,
)

__version__ = "0.1.0"

from .probe import Collection, Probe, ProbeConfig, Schedule, StoreConfig  # noqa: E402
from .store import Run, RunDirectoryError, open_run  # noqa: E402

__all__ = [
    "FIELDS", "HIST_BINS", "InputError", "PendingStats", "Stats", "StatsComputer", "__version__", "backends",
    "diff_stats", "diff_stats_async", "hist_edges", "merge", "tensor_stats", "tensor_stats_async",
    "unavailable_backends", "Collection", "Probe", "ProbeConfig", "Run", "RunDirectoryError", "Schedule",
    "StoreConfig", "open_run",
]
