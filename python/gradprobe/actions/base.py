"""Actions consume findings: stop training, log, e-mail, webhook. They run off the training thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..rules import Finding, Severity


@dataclass(frozen=True)
class ActionContext:
    """What an action may use besides the finding: where the run is, and a way to stop training."""

    run_dir: Path | None = None
    request_stop: Callable[[str], None] = lambda reason: None


@dataclass
class Action:
    """Base: which findings an action takes (severity, rule codes) and how often (cooldown)."""

    min_severity: Severity | str = Severity.WARNING
    codes: tuple[str, ...] = ()  # empty: every rule
    cooldown_seconds: float = 300.0  # per rule code: at most one run in this time
    retries: int = 3
    timeout_seconds: float = 10.0
    inline: bool = field(default=False, init=False)  # runs on the consumer thread (no I/O)

    @property
    def name(self) -> str:
        return type(self).__name__

    def wants(self, finding: Finding) -> bool:
        return finding.severity >= Severity.parse(self.min_severity) and (not self.codes or finding.code in self.codes)

    def describe(self) -> str:
        """Where the action goes, with no secret in it (written to events.jsonl)."""
        return self.name

    def run(self, finding: Finding, context: ActionContext) -> None:
        raise NotImplementedError
