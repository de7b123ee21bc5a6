"""The rules and actions wired for one probe: the engine's events go to the run, its findings to
the actions, and StopTraining's request back to the engine's stop_reason (which the probe reads)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..actions import Action, ActionContext, ActionRunner, Log
from ..actions.basic import describe
from ..records import ModelFacts
from ..rules import Finding, Rule, RuleEngine, Severity, resolve
from ..thread_cpu import ThreadCpu


class Watch:
    def __init__(self, rules: Iterable[Rule] | str | None, actions: Iterable[Action] | None,
                 emit: Callable[[dict[str, Any]], None], run_dir: Path, cpu: ThreadCpu | None = None) -> None:
        rule_list = resolve(rules) if rules is None or isinstance(rules, str) else list(rules)
        action_list = list(actions or ())
        self.engine: RuleEngine | None = None
        self._actions: ActionRunner | None = None
        if rule_list or action_list:
            self._actions = ActionRunner(action_list, emit, ActionContext(run_dir, self.request_stop), cpu=cpu)
            self.engine = RuleEngine(rule_list, emit=emit, on_finding=self._actions.submit, cpu=cpu)

    @property
    def observers(self) -> list[RuleEngine]:
        return [self.engine] if self.engine is not None else []

    @property
    def findings(self) -> list[Finding]:
        return list(self.engine.findings) if self.engine is not None else []

    @property
    def stop_reason(self) -> str | None:
        return self.engine.stop_reason if self.engine is not None else None

    def request_stop(self, reason: str) -> None:
        if self.engine is not None:
            self.engine.request_stop(reason)

    def give_facts(self, facts: ModelFacts) -> None:
        if self.engine is not None:
            self.engine.give_facts(facts)

    def mark_step(self, step: int, mode: str) -> None:
        if self.engine is not None:
            self.engine.mark_step(step, mode)

    @property
    def says_findings(self) -> bool:
        """Whether a Log action says findings (then the run's end summary is said too)."""
        return self._actions is not None and any(isinstance(a, Log) for a in self._actions.actions)

    def summary(self, run_dir: Path, limit: int = 5) -> tuple[int, list[str]]:
        """(logging level, lines): findings by severity, the first of each rule with how often it fired
        again, where the run is. An INFO line when nothing was found."""
        engine = self.engine
        findings = list(engine.findings) if engine is not None else []
        shown = [f for f in findings if f.severity >= Severity.WARNING]
        if not shown:
            return logging.INFO, [f"gradprobe: no findings at warning or above; run: {run_dir}"]
        counts = Counter(f.severity.name.lower() for f in shown)
        order = ("critical", "error", "warning")
        lines = [f"gradprobe: {len(shown)} findings (" + ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
                 + f"); run: {run_dir} (gradprobe show {run_dir}; gradprobe report {run_dir})"]
        first: dict[str, Finding] = {}
        for finding in sorted(shown, key=lambda f: (-int(f.severity), f.step)):
            first.setdefault(finding.code, finding)
        repeats = engine.repeats if engine is not None else {}
        for finding in list(first.values())[:limit]:
            same = [f for f in shown if f.code == finding.code]
            again = len(same) - 1 + sum(repeats.get(f.key, (0, 0))[0] for f in same)
            last = max([f.step for f in same] + [repeats.get(f.key, (0, -1))[1] for f in same])
            folded = f" (...and {again} more times, last at step {last})" if again else ""
            lines.append(f"  {describe(finding)}{folded}")
        if len(first) > limit:
            lines.append(f"  ...and {len(first) - limit} more rules")
        return logging.WARNING, lines

    def close(self, timeout: float) -> None:
        """Stops the engine and waits at most `timeout` seconds for pending actions (see ActionRunner.close)."""
        if self.engine is not None:
            self.engine.close()
        if self._actions is not None:
            self._actions.close(timeout)
