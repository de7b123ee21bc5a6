"""Divergence: the training loss running away."""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from ..records import ScalarRecord
from .base import Finding, Rule, Severity


@dataclass
class Divergence(Rule):
    """The training loss diverging: `confirm` consecutive steps each above `factor` times the
    baseline (the median of the `window` steps before them) and beyond the robust band
    (median + `z_threshold` x MAD). The baseline is at least `floor_fraction` of the loss of the
    first steps, so noise around a loss of ~0 is not taken for a rise.

    Why: a loss that multiplies within a few steps means the optimisation left its basin; the run
    is usually lost (NaN follows) unless stopped at once. Gradient clipping hides the blow-up
    from the gradient norms, not from the loss.
    Typical causes: a learning rate far too high (or a warmup that is too short), fp16 overflow,
    a bad batch that knocked the weights out, Adam's epsilon too small.
    Try: restart from the last good checkpoint with a 10x smaller learning rate or a longer
    warmup; check the loss scale under mixed precision.
    Fires at most `confirm` steps after the onset; once per run unless the loss comes back.
    """

    code = "GP124"
    default_severity = Severity.ERROR
    factor: float = 3.0
    window: int = 20
    confirm: int = 2
    z_threshold: float = 6.0
    min_history: int = 5
    floor_fraction: float = 0.05
    loss: str = "loss"
    _history: deque[float] = field(default_factory=lambda: deque(maxlen=20), repr=False)
    _early: list[float] = field(default_factory=list, repr=False)
    _above: int = 0  # steps in a row above the band
    _onset: int = -1  # the first of them
    _reported: bool = False

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = record.values.get(self.loss)
        if record.mode != "train" or value is None or not math.isfinite(value):
            return []  # NonFinite reports a non-finite loss
        if self._history.maxlen != self.window:
            self._history = deque(self._history, maxlen=self.window)
        if len(self._early) < self.min_history:
            self._early.append(value)
        if len(self._history) < self.min_history:
            self._history.append(value)
            return []
        # statistics.median, not np.median: on 20 values NumPy's call overhead is ~10x the work,
        # and this runs on the consumer thread on every step.
        median = statistics.median(self._history)
        mad = statistics.median([abs(h - median) for h in self._history]) * 1.4826
        baseline = max(median, self.floor_fraction * abs(statistics.median(self._early)))
        above = value > self.factor * baseline and value > median + self.z_threshold * mad
        if not above:
            self._above = 0
            self._history.append(value)
            if value <= baseline:
                self._reported = False
            return []
        # The diverging values stay out of the baseline: it is the level the loss left.
        if self._above == 0:
            self._onset = record.step
        self._above += 1
        if self._above < self.confirm or self._reported:
            return []
        self._reported = True
        onset = self._onset
        return [self.finding(record.step, record.mode,
                             f"training {self.loss} is diverging: {value:.4g} at step {record.step}, "
                             f"{value / baseline:.1f}x its recent median {baseline:.4g}, rising since step {onset} "
                             f"({self._above} steps in a row above {self.factor:g}x). Next: restart from the last "
                             f"good checkpoint with a 10x smaller learning rate or a longer warmup",
                             (self.loss,), value=value, baseline=baseline, factor=value / baseline, onset=onset)]
