"""Liveness rules."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Finding, Rule, Severity


@dataclass
class StalledTraining(Rule):
    """No training step for `threshold` seconds (checked by the engine's clock thread).

    Why: a hung data loader, a deadlocked collective or a stuck process costs hours unnoticed.
    Try: look at the stacks (py-spy dump), the data loader workers, the other ranks.
    """

    code = "GP170"
    default_severity = Severity.CRITICAL
    threshold: float = 1800.0
    _reported_for: float = -1.0

    def on_tick(self, now: float, last_step_time: float | None, step: int, mode: str) -> list[Finding]:
        if last_step_time is None or now - last_step_time < self.threshold or self._reported_for == last_step_time:
            return []
        self._reported_for = last_step_time
        return [self.finding(step, mode, f"no training step for {now - last_step_time:.0f} s (last step {step}). Next: "
                                         f"dump the stacks (py-spy dump) and look at the data loader and the other "
                                         "ranks", (),
                             seconds=now - last_step_time)]
