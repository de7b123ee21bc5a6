"""Rules turn statistics into findings. A rule returns Finding data and never raises to report.

Each rule is a dataclass: its fields are its typed parameters with documented defaults; its
bounded state (windows, first-seen steps) lives in private attributes and round-trips through
state_dict() / load_state_dict(). The class docstring says what it detects, why it matters,
typical causes and what to try; `gradprobe rules` prints it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..records import (
    InputRecord,
    LoaderRecord,
    PhaseRecord,
    PredictionRecord,
    RanksRecord,
    ScalarRecord,
    StartupRecord,
    StatsRecord,
    SystemRecord,
)

# The record each hook takes (the engine gives a rule only the records of the hooks it overrides).
HOOKS: dict[type, str] = {StatsRecord: "on_stats", ScalarRecord: "on_scalars", InputRecord: "on_inputs",
                          PredictionRecord: "on_predictions", SystemRecord: "on_system", PhaseRecord: "on_phases",
                          LoaderRecord: "on_loader", StartupRecord: "on_startup", RanksRecord: "on_ranks"}
# A batch's records, as a rule gets them.
BatchRecord = StatsRecord | ScalarRecord | InputRecord | PredictionRecord | SystemRecord | PhaseRecord | LoaderRecord \
    | StartupRecord | RanksRecord


class Severity(enum.IntEnum):
    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @classmethod
    def parse(cls, value: Severity | str | int) -> Severity:
        if isinstance(value, Severity):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                known = ", ".join(s.name.lower() for s in cls)
                raise ValueError(f"unknown severity {value!r} (known: {known})") from None
        return cls(value)


@dataclass(frozen=True)
class Finding:
    code: str
    rule: str
    severity: Severity
    step: int
    mode: str
    message: str
    tensors: tuple[str, ...] = ()
    evidence: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        """What makes two findings repeats of one another (for de-duplication)."""
        return (self.code, self.mode, self.tensors)

    def to_event(self) -> dict[str, Any]:
        return {"type": "finding", "code": self.code, "rule": self.rule, "severity": self.severity.name.lower(),
                "step": self.step, "mode": self.mode, "message": self.message, "tensors": list(self.tensors),
                "evidence": {k: float(v) for k, v in self.evidence.items()}}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Finding:
        return cls(code=event["code"], rule=event["rule"], severity=Severity.parse(event["severity"]),
                   step=int(event["step"]), mode=event["mode"], message=event["message"],
                   tensors=tuple(event.get("tensors", ())), evidence=dict(event.get("evidence", {})))


@dataclass
class Rule:
    """Base class. Subclasses set `code` and override the hooks they need."""

    code: ClassVar[str] = ""
    default_severity: ClassVar[Severity] = Severity.WARNING
    # The statistics kinds on_stats reads (None: every kind); the engine gives it no other stats record.
    stats_kinds: ClassVar[frozenset[str] | None] = None
    severity: Severity | None = None  # None: the rule's default severity

    def reads(self, record: Any) -> bool:
        """Whether this rule has a hook for the record (the engine skips it otherwise)."""
        hook = HOOKS.get(type(record))
        if hook is None or getattr(type(self), hook) is getattr(Rule, hook):
            return False
        return not isinstance(record, StatsRecord) or self.stats_kinds is None or record.kind in self.stats_kinds

    def on_records(self, records: Sequence[BatchRecord]) -> list[Finding]:
        """Several records in order, all of which this rule reads (a consumer batch, or a stored run):
        one hook call each by default. A rule on every step's path may override it to work on many
        steps at once, as long as its findings are exactly those of the calls one by one."""
        found: list[Finding] = []
        for record in records:
            found += _call(self, record) or []
        return found

    def on_stats(self, record: StatsRecord) -> list[Finding]:
        return []

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        return []

    def on_inputs(self, step: int, mode: str, counts: Mapping[str, int], total: int) -> list[Finding]:
        return []

    def on_predictions(self, step: int, mode: str, labels: np.ndarray, predictions: np.ndarray) -> list[Finding]:
        return []

    def on_tick(self, now: float, last_step_time: float | None, step: int, mode: str) -> list[Finding]:
        return []

    # -- the profiler's records (gradprobe.profiler) ----------------------------------------------------
    def on_system(self, record: SystemRecord) -> list[Finding]:
        return []

    def on_phases(self, record: PhaseRecord) -> list[Finding]:
        return []

    def on_loader(self, record: LoaderRecord) -> list[Finding]:
        return []

    def on_startup(self, record: StartupRecord) -> list[Finding]:
        return []

    def on_ranks(self, record: RanksRecord) -> list[Finding]:
        return []

    def summary(self) -> dict[str, Any] | None:
        """A report the engine emits at close as a `rule_summary` event (None: nothing to report)."""
        return None

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    def finding(self, step: int, mode: str, message: str, tensors: Iterable[str] = (), **evidence: float) -> Finding:
        return Finding(self.code, self.name, Severity.parse(self.severity or self.default_severity), step, mode,
                       message, tuple(tensors), evidence)

    @classmethod
    def parameters(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if not f.name.startswith("_")]

    def state_dict(self) -> dict[str, Any]:
        """Bounded state, JSON-ready: every private attribute but caches (names ending in _cache,
        derived from the record in hand)."""
        return {k: _jsonable(v) for k, v in vars(self).items() if k.startswith("_") and not k.endswith("_cache")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            if not key.startswith("_") or not hasattr(self, key):
                raise KeyError(f"{self.name}: unknown state key {key!r}")
            current = getattr(self, key)
            setattr(self, key, _restore_like(current, value))


def _call(rule: Rule, record: BatchRecord) -> list[Finding]:
    if isinstance(record, InputRecord):
        return rule.on_inputs(record.step, record.mode, record.counts, record.total)
    if isinstance(record, PredictionRecord):
        return rule.on_predictions(record.step, record.mode, record.labels, record.predictions)
    hook: list[Finding] = getattr(rule, HOOKS[type(record)])(record)
    return hook


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "maxlen"):  # deque
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _restore_like(current: Any, value: Any) -> Any:
    if hasattr(current, "maxlen"):
        current.clear()
        current.extend(value)
        return current
    if isinstance(current, dict) and isinstance(value, dict):
        return {k: _restore_like(current.get(k), v) if k in current else v for k, v in value.items()}
    return value


def per_row(record: StatsRecord, present_only: bool = True) -> np.ndarray:
    """Rows with a tensor and at least one element."""
    rows = record.present & (record.stats.numel > 0) if present_only else record.stats.numel >= 0
    return np.flatnonzero(rows)


def same_rows_runs(records: Sequence[StatsRecord]) -> list[tuple[list[StatsRecord], np.ndarray]]:
    """Consecutive records with the same names object and the same rows with a tensor (per_row),
    each run with those rows: what a rule can work on as one (steps x tensors) array."""
    runs: list[tuple[list[StatsRecord], np.ndarray]] = []
    for record in records:
        rows = per_row(record)
        last = runs[-1][0][-1] if runs else None
        if last is not None and (last.names is record.names or list(last.names) == list(record.names)) \
                and np.array_equal(runs[-1][1], rows):
            runs[-1][0].append(record)
        else:
            runs.append(([record], rows))
    return runs
