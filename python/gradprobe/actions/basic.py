"""StopTraining and Log."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..rules import Finding, Severity
from .base import Action, ActionContext


@dataclass
class StopTraining(Action):
    """Sets probe.should_stop at the end of the current step (on every rank alike); the
    integrations stop their trainer. Default: findings of severity error and above."""

    min_severity: Severity | str = Severity.ERROR
    cooldown_seconds: float = 0.0
    inline: bool = field(default=True, init=False)

    def run(self, finding: Finding, context: ActionContext) -> None:
        context.request_stop(f"[{finding.code}] {finding.message}")


@dataclass
class Log(Action):
    """Writes each finding to a Python logger (default `gradprobe`)."""

    logger: str = "gradprobe"
    cooldown_seconds: float = 0.0
    inline: bool = field(default=True, init=False)

    def run(self, finding: Finding, context: ActionContext) -> None:
        level = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
                 Severity.ERROR: logging.ERROR, Severity.CRITICAL: logging.CRITICAL}[finding.severity]
        logging.getLogger(self.logger).log(level, "step %d (%s) [%s %s] %s", finding.step, finding.mode,
                                           finding.code, finding.rule, finding.message)
