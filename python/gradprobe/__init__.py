"""gradprobe: an in-process debugger and profiler for PyTorch training.

The core is a native fused pass that computes per-tensor statistics of gradients, weights,
updates and activations for every tensor at once, with no host-device synchronisation.

`import gradprobe` loads only the statistics core; the subpackages (gradprobe.rules,
gradprobe.actions, gradprobe.store, gradprobe.probe, ...) and the names they export here (Probe,
open_run, ...) load on first use, so the probe's torch import is paid only by those who use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
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

if TYPE_CHECKING:  # what __getattr__ loads, for type checkers and editors
    from . import actions, export, probe, records, report, rules, store, workflows
    from .probe import Collection, Probe, ProbeConfig, Schedule
    from .store import Run, RunDirectoryError, StoreConfig, open_run

_SUBMODULES = ("actions", "export", "probe", "records", "report", "rules", "store", "workflows")
_LAZY_NAMES = {"Collection": "probe", "Probe": "probe", "ProbeConfig": "probe", "Schedule": "probe",
               "Run": "store", "RunDirectoryError": "store", "StoreConfig": "store", "open_run": "store"}

__all__ = [
    "FIELDS", "HIST_BINS", "InputError", "PendingStats", "Stats", "StatsComputer", "__version__", "backends",
    "diff_stats", "diff_stats_async", "hist_edges", "merge", "tensor_stats", "tensor_stats_async",
    "unavailable_backends", "Collection", "Probe", "ProbeConfig", "Run", "RunDirectoryError", "Schedule",
    "StoreConfig", "open_run", "actions", "export", "probe", "records", "report", "rules", "store", "workflows",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
