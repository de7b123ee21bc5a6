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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..own_warnings import warn
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
from ..thread_cpu import ThreadCpu
from .base import HOOKS, BatchRecord, Finding, Rule, Severity
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
                 tick_seconds: float | None = None, cpu: ThreadCpu | None = None) -> None:
        self._cpu = cpu or ThreadCpu()
        self.rules: list[Rule] = list(rules)
        self.findings: list[Finding] = []
        self.repeat_after = repeat_after
        self.stop_reason: str | None = None  # set by request_stop (StopTraining); the probe applies it
        self._emit = emit
        self._on_finding = on_finding
        self._seen: dict[FindingKey, int] = {}
        self.repeats: dict[FindingKey, tuple[int, int]] = {}  # key -> (times it fired again, last step)
        self._routes: dict[tuple[type, str | None], list[int]] = {}
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
    def on_records(self, records: Sequence[BatchRecord]) -> list[Finding]:
        """A batch of records in order (the consumer's, a stored run's): each rule gets, in one call, the
        ones it reads (Rule.on_records). Findings are emitted in record order, as one call per record would."""
        mine: list[list[BatchRecord]] = [[] for _ in self.rules]
        for record in records:
            for index in self._readers(record):
                mine[index].append(record)
        produced: list[tuple[int, Finding]] = []
        for index, (rule, its) in enumerate(zip(self.rules, mine)):
            if its:
                produced += [(index, f) for f in self._call_rule(rule, "on_records", its)]
                time.sleep(0)  # lets a thread waiting for the GIL (training, launching kernels) have it
        if len(records) > 1:  # rule-major to record-major: by the first record of each finding's step
            first: dict[tuple[str, int], int] = {}
            for position, record in enumerate(records):
                first.setdefault((getattr(record, "mode", ""), getattr(record, "step", -1)), position)
            produced.sort(key=lambda pair: (first.get((pair[1].mode, pair[1].step), len(records)), pair[0]))
        return self._report([f for _, f in produced])

    def on_stats(self, record: StatsRecord) -> None:
        self.on_records([record])

    def on_scalars(self, record: ScalarRecord) -> None:
        self.on_records([record])

    def on_inputs(self, record: InputRecord) -> None:
        self.on_records([record])

    def on_predictions(self, record: PredictionRecord) -> None:
        self.on_records([record])

    # The profiler's records (live: the profiler thread and the training thread).
    def on_system(self, record: SystemRecord) -> None:
        self.on_records([record])

    def on_phases(self, record: PhaseRecord) -> None:
        self.on_records([record])

    def on_loader(self, record: LoaderRecord) -> None:
        self.on_records([record])

    def on_startup(self, record: StartupRecord) -> None:
        self.on_records([record])

    def on_ranks(self, record: RanksRecord) -> None:
        self.on_records([record])

    def _readers(self, record: BatchRecord) -> list[int]:
        """Which rules read a record (worked out once per record type and statistics kind)."""
        key = (type(record), record.kind if isinstance(record, StatsRecord) else None)
        readers = self._routes.get(key)
        if readers is None:
            readers = self._routes[key] = [i for i, rule in enumerate(self.rules) if rule.reads(record)]
        return readers

    def give_facts(self, facts: ModelFacts) -> None:
        """Rules that need parameter shapes or module types get them unless given explicitly."""
        for rule in self.rules:
            if hasattr(rule, "shapes") and not rule.shapes:
                rule.shapes = dict(facts.shapes)
            if hasattr(rule, "module_types") and not rule.module_types:
                rule.module_types = dict(facts.module_types)

    def replay(self, records: Iterable[Record]) -> list[Finding]:
        """Runs the rules over records in order (a stored run's `records()`); returns the findings.
        Records go to the rules in batches, as the consumer sends them live: the same findings."""
        batch: list[BatchRecord] = []
        for record in records:
            if isinstance(record, ModelFacts):
                self.on_records(batch)
                batch = []
                self.give_facts(record)
            elif type(record) in HOOKS:
                batch.append(record)
                if len(batch) >= REPLAY_BATCH:
                    self.on_records(batch)
                    batch = []
            else:
                raise TypeError(f"replay: not a record: {type(record).__name__}")
        self.on_records(batch)
        self.close()
        return list(self.findings)

    # -- live: the training thread ------------------------------------------------------------
    def mark_step(self, step: int, mode: str) -> None:
        """The training loop finished a step (StalledTraining's clock starts with the first one)."""
        self._last_step_time = time.time()
        self._last_step = (step, mode)
        if self._tick is None and self._tick_interval is not None and not self._closed.is_set():
            self._tick = self._cpu.thread(self._tick_loop, "gradprobe-clock", (self._tick_interval,))
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
        produced: list[Finding] = []
        for rule in self.rules:
            produced += self._call_rule(rule, method, *args)
        return self._report(produced)

    def _call_rule(self, rule: Rule, method: str, *args: Any) -> list[Finding]:
        try:
            return list(getattr(rule, method)(*args) or [])
        except Exception:
            self._event({"type": "rule_error", "rule": rule.name, "error": traceback.format_exc(limit=3)})
            warn(f"gradprobe: rule {rule.name} failed and was skipped:\n{traceback.format_exc(limit=3)}",
                          RuntimeWarning, stacklevel=3)
            return []

    def _report(self, produced: list[Finding]) -> list[Finding]:
        """Emits and hands on the findings that are not repeats."""
        new = [finding for finding in produced if self._is_new(finding)]
        for finding in new:
            self._event(finding.to_event())
            if self._on_finding is not None:
                self._on_finding(finding)
        return new

    def _is_new(self, finding: Finding) -> bool:
        with self._lock:
            last = self._seen.get(finding.key)
            if last is not None and finding.step - last < self.repeat_after:
                times, _ = self.repeats.get(finding.key, (0, 0))
                self.repeats[finding.key] = (times + 1, finding.step)
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


# Records a stored run's replay hands to the rules at once (live, the consumer's batches).
REPLAY_BATCH = 256


def at_least(findings: Iterable[Finding], severity: Severity | str) -> list[Finding]:
    """The findings at or above a severity."""
    level = Severity.parse(severity)
    return [f for f in findings if f.severity >= level]
