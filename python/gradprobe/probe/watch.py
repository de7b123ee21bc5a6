"""The rules and actions wired for one probe: the engine's events go to the run, its findings to
the actions, and StopTraining's request back to the engine's stop_reason (which the probe reads)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..actions import Action, ActionContext, ActionRunner
from ..records import ModelFacts
from ..rules import Finding, Rule, RuleEngine, resolve
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

    def close(self, timeout: float) -> None:
        """Stops the engine and waits at most `timeout` seconds for pending actions (see ActionRunner.close)."""
        if self.engine is not None:
            self.engine.close()
        if self._actions is not None:
            self._actions.close(timeout)
