"""Loss rules: not decreasing, spikes, overfitting, overtraining."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..records import ScalarRecord
from .base import Finding, Rule, Severity


def _loss(record: ScalarRecord, name: str) -> float | None:
    value = record.values.get(name)
    return value if value is not None and math.isfinite(value) else None


@dataclass
class LossNotDecreasing(Rule):
    """The mean loss over the last `num_steps` steps is not lower than over the `num_steps` before
    it by more than `diff_percent` percent (per mode).

    Why: a loss that stops falling early means the run is not learning.
    Typical causes: learning rate too low or too high, frozen parameters, a data pipeline that
    repeats one batch, labels that do not match the inputs.
    Try: check the optimizer's parameter groups and learning rate, overfit one small batch.
    """

    code = "GP120"
    num_steps: int = 10
    diff_percent: float = 0.0
    loss: str = "loss"
    mode: str = "train"
    _window: list[float] = field(default_factory=list, repr=False)
    _reported_at: int = -1

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = _loss(record, self.loss)
        if record.mode != self.mode or value is None:
            return []
        self._window.append(value)
        if len(self._window) > 2 * self.num_steps:
            self._window.pop(0)
        if len(self._window) < 2 * self.num_steps:
            return []
        before = float(np.mean(self._window[:self.num_steps]))
        now = float(np.mean(self._window[self.num_steps:]))
        improved = before - now > abs(before) * self.diff_percent / 100.0
        if improved or record.step - self._reported_at < self.num_steps:
            return []
        self._reported_at = record.step
        return [self.finding(record.step, record.mode,
                             f"{self.loss} has not decreased over the last {self.num_steps} steps "
                             f"(mean {now:.4g}, before {before:.4g})", (self.loss,), mean=now, previous=before)]


@dataclass
class LossSpike(Rule):
    """A loss value more than `z_threshold` robust standard deviations (median / MAD over the last
    `window` steps) above the median.

    Why: spikes often precede divergence, or reveal a bad batch.
    Typical causes: a learning rate too high for this point of training, a corrupt batch,
    Adam's epsilon too small, fp16 overflow handled late.
    Try: inspect the batch at that step, lower the learning rate, clip gradients.
    """

    code = "GP121"
    window: int = 50
    z_threshold: float = 6.0
    min_history: int = 10
    loss: str = "loss"
    _history: deque[float] = field(default_factory=lambda: deque(maxlen=50), repr=False)

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = _loss(record, self.loss)
        if record.mode != "train" or value is None:
            return []
        if self._history.maxlen != self.window:
            self._history = deque(self._history, maxlen=self.window)
        found = []
        if len(self._history) >= self.min_history:
            history = np.asarray(self._history)
            median = float(np.median(history))
            mad = float(np.median(np.abs(history - median))) * 1.4826 + 1e-12 * max(1.0, abs(median))
            z = (value - median) / mad
            if z > self.z_threshold:
                found.append(self.finding(record.step, record.mode,
                                          f"{self.loss} spiked to {value:.4g} at step {record.step} "
                                          f"(median {median:.4g}, robust z {z:.1f})", (self.loss,), value=value,
                                          median=median, z=z))
        self._history.append(value)
        return found


@dataclass
class Overfit(Rule):
    """Validation loss exceeds training loss by more than `ratio` (relative) for `patience`
    consecutive evaluations, from `start_step` on.

    Why: the model memorises the training set instead of generalising.
    Typical causes: too little data, too many epochs, too little regularisation.
    Try: early stopping, more data or augmentation, dropout or weight decay, a smaller model.
    The training loss compared is the mean since the previous evaluation.
    """

    code = "GP122"
    ratio: float = 0.1
    patience: int = 1
    start_step: int = 0
    loss: str = "loss"
    _train: list[float] = field(default_factory=list, repr=False)
    _strikes: int = 0
    _reported: bool = False

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = _loss(record, self.loss)
        if value is None:
            return []
        if record.mode == "train":
            if record.step >= self.start_step:
                self._train.append(value)
            return []
        if record.mode != "eval" or not self._train:
            return []
        train = float(np.mean(self._train))
        self._train = []
        gap = (value - train) / max(abs(train), 1e-12)
        self._strikes = self._strikes + 1 if gap > self.ratio else 0
        if self._strikes >= self.patience and not self._reported:
            self._reported = True
            return [self.finding(record.step, record.mode,
                                 f"validation {self.loss} exceeds training {self.loss} by {100 * gap:.0f}% for "
                                 f"{self._strikes} evaluations: overfitting", (self.loss,), gap=gap,
                                 validation=value, training=train)]
        if self._strikes == 0:
            self._reported = False
        return []


@dataclass
class Overtraining(Rule):
    """No improvement of the best loss by `delta` within `patience_train` training steps or
    `patience_validation` evaluations.

    Why: further training only costs time (and, on validation, overfits).
    Typical causes: converged model, learning rate decayed to nothing, plateau.
    Try: stop (or checkpoint the best model), change the schedule.
    """

    code = "GP123"
    default_severity = Severity.INFO
    delta: float = 0.1
    patience_train: int = 5
    patience_validation: int = 10
    loss: str = "loss"
    _best: dict[str, float] = field(default_factory=dict, repr=False)
    _since: dict[str, int] = field(default_factory=dict, repr=False)
    _reported: dict[str, int] = field(default_factory=dict, repr=False)

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = _loss(record, self.loss)
        if value is None or record.mode not in ("train", "eval"):
            return []
        mode = record.mode
        patience = self.patience_train if mode == "train" else self.patience_validation
        best = self._best.get(mode)
        if best is None or value < best - self.delta:
            self._best[mode] = value
            self._since[mode] = 0
            self._reported.pop(mode, None)
            return []
        self._since[mode] = self._since.get(mode, 0) + 1
        if self._since[mode] >= patience and mode not in self._reported:
            self._reported[mode] = record.step
            what = "training" if mode == "train" else "validation"
            return [self.finding(record.step, mode,
                                 f"{what} {self.loss} has not improved by {self.delta:g} for {self._since[mode]} "
                                 f"{'steps' if mode == 'train' else 'evaluations'} (best {self._best[mode]:.4g})",
                                 (self.loss,), best=self._best[mode], current=value)]
        return []
