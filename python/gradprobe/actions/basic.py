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
    """Says each finding (warning and above by default) on a Python logger (default `gradprobe`) as it
    fires: one line with the severity, the rule, the step, the tensors and the message, which ends with
    what to try next. A rule firing again on the same tensor is folded: not said again, but counted in
    the run's end summary. Without any logging configured (no handler on the logger or the root), the
    lines go to stderr; an application that configures logging routes them like any other.

    The default action of a Probe given no `actions` (ProbeConfig.print_findings=False, or actions=[],
    keeps findings in events.jsonl only)."""

    logger: str = "gradprobe"
    cooldown_seconds: float = 0.0
    inline: bool = field(default=True, init=False)
    _said: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False)

    def run(self, finding: Finding, context: ActionContext) -> None:
        fold = (finding.code, finding.tensors[0] if finding.tensors else "")
        if fold in self._said:
            return
        self._said.add(fold)
        log = logger(self.logger)
        log.log(_LEVELS[finding.severity], "gradprobe %s", describe(finding))


_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING, Severity.ERROR: logging.ERROR,
           Severity.CRITICAL: logging.CRITICAL}


def describe(finding: Finding) -> str:
    """One line: severity, code and rule, step and mode, the tensors, the message."""
    where = f" on {_tensors(finding.tensors)}" if finding.tensors else ""
    return (f"{finding.severity.name.lower()} [{finding.code} {finding.rule}] step {finding.step} ({finding.mode})"
            f"{where}: {finding.message}")


def _tensors(names: tuple[str, ...], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def logger(name: str = "gradprobe") -> logging.Logger:
    """The named logger, with a stderr handler when nothing is configured (a script with no logging
    set up still sees the findings; a configured application routes them itself)."""
    log = logging.getLogger(name)
    if not log.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
    return log
