"""The rule engine: evaluates rules on records as they arrive, de-duplicates the findings, emits
them as events and hands them on. It knows nothing of the probe or the store: live, the probe
feeds it from its consumer thread and wires `emit` to the run's events and `on_finding` to the
actions; offline, `replay` feeds it a stored run's records (`gradprobe check`):

    findings = RuleEngine(rules).replay(open_run(path).records())
"""

from __future__ import annotations

import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..records import (
    InputRecord,
    LoaderRecord,
    ModelFacts,
    PhaseRecord,
    PredictionRecord,
    RanksRecord,
    Record,
    ScalarRecord,
    StartupRecord,
    StatsRecord,
    SystemRecord,
)
from .base import Finding, Rule, Severity
from .system import StalledTraining

Emit = Callable[[dict[str, Any]], None]
FindingKey = tuple[str, str, tuple[str, ...]]


class RuleEngine:
    """Thread-safe; findings are kept in order in `findings`.

    emit: receives every event (findings, rule errors) as a JSON-ready dict.
    facts: parameter shapes and module types, for the rules that need them.
    on_finding: receives each new finding after it was emitted (the probe's actions).
    repeat_after: a repeated finding is reported again only after this many steps.
    """

    def __init__(self, rules: Iterable[Rule], *, emit: Emit | None = None, facts: ModelFacts | None = None,
                 on_finding: Callable[[Finding], None] | None = None, repeat_after: int = 1_000_000,
                 tick_seconds: float | None = None) -> None:
        self.rules: list[Rule] = list(rules)
        self.findings: list[Finding] = []
        self.repeat_after = repeat_after
        self.stop_reason: str | None = None  # set by request_stop (StopTraining); the probe applies it
        self._emit = emit
        self._on_finding = on_finding
        self._seen: dict[FindingKey, int] = {}
        self._lock = threading.Lock()
        self._last_step: tuple[int, str] = (0, "train")
        self._last_step_time: float | None = None
        self._closed = threading.Event()
        periods = [r.threshold for r in self.rules if isinstance(r, StalledTraining)]
        self._tick_interval = tick_seconds or (max(0.05, min(30.0, min(periods) / 10)) if periods else None)
        self._tick: threading.Thread | None = None
        if facts is not None:
            self.give_facts(facts)

    # -- records (any thread; live: the consumer thread) -----------------------------------------
    def on_stats(self, record: StatsRecord) -> None:
        self._run("on_stats", record)

    def on_scalars(self, record: ScalarRecord) -> None:
        self._run("on_scalars", record)

    def on_inputs(self, record: InputRecord) -> None:
        self._run("on_inputs", record.step, record.mode, record.counts, record.total)

    def on_predictions(self, record: PredictionRecord) -> None:
        self._run("on_predictions", record.step, record.mode, record.labels, record.predictions)

    # The profiler's records (live: the profiler thread and the training thread).
    def on_system(self, record: SystemRecord) -> None:
        self._run("on_system", record)

    def on_phases(self, record: PhaseRecord) -> None:
        self._run("on_phases", record)

    def on_loader(self, record: LoaderRecord) -> None:
        self._run("on_loader", record)

    def on_startup(self, record: StartupRecord) -> None:
        self._run("on_startup", record)

    def on_ranks(self, record: RanksRecord) -> None:
        self._run("on_ranks", record)

    def give_facts(self, facts: ModelFacts) -> None:
        """Rules that need parameter shapes or module types get them unless given explicitly."""
        for rule in self.rules:
            if hasattr(rule, "shapes") and not rule.shapes:
                rule.shapes = dict(facts.shapes)
            if hasattr(rule, "module_types") and not rule.module_types:
                rule.module_types = dict(facts.module_types)

    def replay(self, records: Iterable[Record]) -> list[Finding]:
        """Runs the rules over records in order (a stored run's `records()`); returns the findings."""
        for record in records:
            if isinstance(record, StatsRecord):
                self.on_stats(record)
            elif isinstance(record, ScalarRecord):
                self.on_scalars(record)
            elif isinstance(record, InputRecord):
                self.on_inputs(record)
            elif isinstance(record, PredictionRecord):
                self.on_predictions(record)
            elif isinstance(record, ModelFacts):
                self.give_facts(record)
            elif type(record) in _PROFILER_HOOKS:
                self._run(_PROFILER_HOOKS[type(record)], record)
            else:
                raise TypeError(f"replay: not a record: {type(record).__name__}")
        self.close()
        return list(self.findings)

    # -- live: the training thread ------------------------------------------------------------
    def mark_step(self, step: int, mode: str) -> None:
        """The training loop finished a step (StalledTraining's clock starts with the first one)."""
        self._last_step_time = time.time()
        self._last_step = (step, mode)
        if self._tick is None and self._tick_interval is not None and not self._closed.is_set():
            self._tick = threading.Thread(target=self._tick_loop, args=(self._tick_interval,),
                                          name="gradprobe-clock", daemon=True)
            self._tick.start()

    def request_stop(self, reason: str) -> None:
        """Asks for a stop (StopTraining, from the consumer or actions thread); the first reason wins."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def close(self, timeout: float = 30.0) -> None:
        """Stops the clock and emits each rule's summary (once) as a `rule_summary` event."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._tick is not None:
            self._tick.join(timeout)
        for rule in self.rules:
            try:
                summary = rule.summary()
            except Exception:
                self._event({"type": "rule_error", "rule": rule.name, "error": traceback.format_exc(limit=3)})
                continue
            if summary is not None:
                self._event({"type": "rule_summary", "rule": rule.name, "code": rule.code, "summary": summary})

    # -- internals ----------------------------------------------------------------------------------
    def _run(self, method: str, *args: Any) -> list[Finding]:
        new: list[Finding] = []
        for rule in self.rules:
            try:
                produced = getattr(rule, method)(*args) or []
            except Exception:
                self._event({"type": "rule_error", "rule": rule.name, "error": traceback.format_exc(limit=3)})
                warnings.warn(f"gradprobe: rule {rule.name} failed and was skipped:\n{traceback.format_exc(limit=3)}",
                              RuntimeWarning, stacklevel=2)
                continue
            for finding in produced:
                if self._is_new(finding):
                    new.append(finding)
        for finding in new:
            self._event(finding.to_event())
            if self._on_finding is not None:
                self._on_finding(finding)
        return new

    def _is_new(self, finding: Finding) -> bool:
        with self._lock:
            last = self._seen.get(finding.key)
            if last is not None and finding.step - last < self.repeat_after:
                return False
            self._seen[finding.key] = finding.step
            self.findings.append(finding)
            return True

    def _event(self, event: dict[str, Any]) -> None:
        if self._emit is not None:
            self._emit(event)

    def _tick_loop(self, interval: float) -> None:
        while not self._closed.wait(interval):
            step, mode = self._last_step
            self._run("on_tick", time.time(), self._last_step_time, step, mode)


_PROFILER_HOOKS: dict[type, str] = {SystemRecord: "on_system", PhaseRecord: "on_phases", LoaderRecord: "on_loader",
                                    StartupRecord: "on_startup", RanksRecord: "on_ranks"}


def at_least(findings: Iterable[Finding], severity: Severity | str) -> list[Finding]:
    """The findings at or above a severity."""
    level = Severity.parse(severity)
    return [f for f in findings if f.severity >= level]
