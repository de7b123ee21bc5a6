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


Record = Union[StatsRecord, ScalarRecord, InputRecord, PredictionRecord, ModelFacts]


class Observer(Protocol):
    """Receives the records as the consumer thread produces them (every method is optional)."""

    def on_stats(self, record: StatsRecord) -> None: ...

    def on_scalars(self, record: ScalarRecord) -> None: ...
