"""The records that flow from the probe (live) or a stored run (replay) to the rules.

A leaf of the package: it imports only `stats`. The probe and the store's reader produce these
records; the rule engine consumes them; nothing here knows who produced them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Union

import numpy as np

from .stats import Stats


@dataclass(frozen=True)
class StatsRecord:
    """One step's statistics of one kind: every named tensor, present or not (absent rows are NaN)."""

    step: int
    mode: str
    kind: str
    names: Sequence[str]
    present: np.ndarray
    stats: Stats  # full length: one row per name
    ratio: np.ndarray | None = None  # updates: |w_after - w_before| / |w_before|


@dataclass(frozen=True)
class ScalarRecord:
    """One step's scalars (losses, metrics, learning rate, ...) and when they were recorded."""

    step: int
    mode: str
    values: dict[str, float]
    time: float


@dataclass(frozen=True)
class InputRecord:
    """Counts of chosen token ids among one step's model inputs."""

    step: int
    mode: str
    counts: Mapping[str, int]
    total: int


@dataclass(frozen=True)
class PredictionRecord:
    """Labels and predicted classes of one batch."""

    step: int
    mode: str
    labels: np.ndarray
    predictions: np.ndarray


@dataclass(frozen=True)
class ModelFacts:
    """What some rules need to know about the model: parameter shapes and module class names.

    The probe reads them from the model; a stored run from meta.json. A replayed run yields them
    first, before any step's records.
    """

    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    module_types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SystemRecord:
    """One system sample: per device ("host", "process", "cpu<i>", "gpu<i>"), metric -> value
    (names in gradprobe.metrics). A metric that could not be read is absent, never NaN."""

    time: float
    node: str
    rank: int
    step: int  # the step in progress when sampled
    mode: str
    values: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class PhaseRecord:
    """Seconds one step spent per phase (store.schema.PHASE_COLUMNS; NaN: not measured).

    time is the step's start (unix seconds); gradprobe's own time is excluded from the other phases."""

    step: int
    mode: str
    node: str
    rank: int
    time: float
    phases: Mapping[str, float]


@dataclass(frozen=True)
class LoaderRecord:
    """A data loader's configuration, recorded when iteration over it starts; cuda: the training
    runs on a GPU; cpus: the cores available to this process; local_ranks: processes on this node."""

    step: int
    mode: str
    num_workers: int
    pin_memory: bool
    batch_size: int | None
    prefetch_factor: int | None
    cpus: int
    local_ranks: int
    cuda: bool


@dataclass(frozen=True)
class StartupRecord:
    """Seconds from the process's start to the end of its first step."""

    step: int
    mode: str
    seconds: float


@dataclass(frozen=True)
class RanksRecord:
    """Every rank's summary over the same window of steps, exchanged across ranks: per rank its
    mean seconds per phase, and per device ("rank<r>/gpu<i>" or "rank<r>/process") a utilisation
    histogram (counts over `bins` equal bins of 0-100 %)."""

    step: int
    mode: str
    phase_means: Mapping[int, Mapping[str, float]]
    utilization: Mapping[str, Sequence[int]]


Record = Union[StatsRecord, ScalarRecord, InputRecord, PredictionRecord, ModelFacts, SystemRecord, PhaseRecord,
               LoaderRecord, StartupRecord, RanksRecord]


class Observer(Protocol):
    """Receives the records as the consumer thread produces them (every method is optional)."""

    def on_stats(self, record: StatsRecord) -> None: ...

    def on_scalars(self, record: ScalarRecord) -> None: ...
