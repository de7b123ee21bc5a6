"""Loss rules: not decreasing, spikes, overfitting, overtraining."""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..records import ScalarRecord
from .base import Finding, Rule, Severity


def _loss(record: ScalarRecord, name: str) -> float | None:
    value = record.values.get(name)
    return value if value is not None and math.isfinite(value) else None


def robust_slope(values: Sequence[float] | np.ndarray) -> float:
    """Theil-Sen slope per step: the median of the pairwise slopes (one outlier batch cannot tilt it)."""
    y = np.asarray(values, dtype=np.float64)
    i, j, gap = _pairs(len(y))
    return float(np.median((y[j] - y[i]) / gap)) if len(i) else 0.0


@functools.lru_cache(maxsize=8)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    return i, j, (j - i).astype(np.float64)


@dataclass
class LossNotDecreasing(Rule):
    """The loss shows no downward trend over the last 2 x `num_steps` steps: neither its robust
    (Theil-Sen) slope nor the median of the last `num_steps` steps against the median of the
    `num_steps` before says it fell by more than `diff_percent` percent. Checked on every step of
    `mode` from step 2 x `num_steps` on; silent once the loss fell below `converged_fraction` of
    its median over the first 5 steps (a memorised or converged run cannot fall further).

    Why: a loss that does not fall means the run is not learning.
    Typical causes: learning rate too low (or 0) or too high, frozen parameters, a data pipeline
    that repeats one batch, labels that do not match the inputs.
    Try: check the optimizer's parameter groups and learning rate, overfit one small batch.
    Medians and a robust slope, not means: one noisy batch neither hides nor fakes a trend.
    """

    code = "GP120"
    num_steps: int = 25
    diff_percent: float = 1.0
    converged_fraction: float = 0.01
    loss: str = "loss"
    mode: str = "train"
    _window: list[float] = field(default_factory=list, repr=False)
    _early: list[float] = field(default_factory=list, repr=False)
    _reported_at: int = -1

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        value = _loss(record, self.loss)
        if record.mode != self.mode or value is None:
            return []
        if len(self._early) < 5:
            self._early.append(value)
        self._window.append(value)
        if len(self._window) > 2 * self.num_steps:
            self._window.pop(0)
        if len(self._window) < 2 * self.num_steps:
            return []
        early = float(np.median(self._early))
        before = float(np.median(self._window[:self.num_steps]))
        now = float(np.median(self._window[self.num_steps:]))
        if abs(now) <= self.converged_fraction * abs(early):
            return []  # converged or memorised
        margin = abs(before) * self.diff_percent / 100.0
        if record.step - self._reported_at < self.num_steps or before - now > margin:
            return []  # reported lately, or the median fell
        if -robust_slope(self._window) * len(self._window) > margin:
            return []  # the trend fell (the slope costs the most: looked at last)
        self._reported_at = record.step
        return [self.finding(record.step, record.mode,
                             f"{self.loss} has not decreased over steps {record.step - 2 * self.num_steps + 1}-"
                             f"{record.step} (median {now:.4g} over the last {self.num_steps} steps, {before:.4g} "
                             f"before; first steps {early:.4g}). Next: check the learning rate and that the "
                             f"optimizer holds the model's parameters; try to overfit one batch", (self.loss,),
                             mean=now, previous=before, early=early)]


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
                                          f"(median {median:.4g}, robust z {z:.1f}). Next: inspect that step's "
                                          f"batch; if spikes recur, lower the learning rate or clip gradients",
                                          (self.loss,), value=value, median=median, z=z))
        self._history.append(value)
        return found


@dataclass
class Overfit(Rule):
    """Overfitting, judged at evaluations: the validation loss rose more than `min_rise` (relative)
    above its best while the training loss kept falling below its value at that best and the gap
    between them widened, at `patience` consecutive evaluations (from `start_step` on), with a
    rising trend (robust slope) over those evaluations and the one before. Also on
    the named validation `metrics` (higher is better, read from `metrics={"accuracy": ...}`):
    the metric fell more than `min_rise` below its best while the training loss kept falling.

    The training loss at an evaluation is the median of the training losses since the previous
    evaluation, so per-batch noise does not count as a trend. Silent without evaluations.
    Why: the model memorises the training set instead of generalising; every further step makes
    the model you would ship worse.
    Typical causes: too little data, too many epochs, too little regularisation.
    Try: early stopping at the best evaluation, more data or augmentation, dropout or weight
    decay, a smaller model.
    """

    code = "GP122"
    patience: int = 3
    min_rise: float = 0.1
    start_step: int = 0
    loss: str = "loss"
    metrics: tuple[str, ...] = ("accuracy", "acc", "f1")
    _train: list[float] = field(default_factory=list, repr=False)
    _last_train_step: int = -1
    _best: dict[str, list[float]] = field(default_factory=dict, repr=False)  # value -> [best, train then, gap then]
    _strikes: dict[str, int] = field(default_factory=dict, repr=False)
    _recent: dict[str, list[float]] = field(default_factory=dict, repr=False)  # value -> last patience+1 scores
    _reported: dict[str, int] = field(default_factory=dict, repr=False)

    def on_scalars(self, record: ScalarRecord) -> list[Finding]:
        if record.mode == "train":
            value = _loss(record, self.loss)
            if value is not None and record.step >= self.start_step:
                self._train.append(value)
                self._last_train_step = record.step
            return []
        if record.mode != "eval" or not self._train:
            return []
        train = float(np.median(self._train))
        self._train = []
        watched = []
        value = _loss(record, self.loss)
        if value is not None:
            watched.append((f"validation {self.loss}", value, False))
        for name in self.metrics:
            metric = _loss(record, f"metric/{name}")
            if metric is not None:
                watched.append((f"validation {name}", metric, True))
        found = []
        for label, value, higher_is_better in watched:
            found += self._judge(record, label, value, higher_is_better, train)
        return found

    def _judge(self, record: ScalarRecord, label: str, value: float, higher_is_better: bool,
               train: float) -> list[Finding]:
        sign = -1.0 if higher_is_better else 1.0  # in "lower is better" units
        score = sign * value
        recent = self._recent.setdefault(label, [])
        recent.append(score)
        del recent[:-(self.patience + 1)]
        best = self._best.get(label)
        if best is None or score < best[0]:
            self._best[label] = [score, train, score - train]
            self._strikes[label] = 0
            self._reported.pop(label, None)
            return []
        best_score, train_then, gap_then = best
        worse = score - best_score > self.min_rise * abs(best_score)
        train_falling = train < train_then
        widening = higher_is_better or (score - train) > gap_then
        self._strikes[label] = self._strikes.get(label, 0) + 1 if worse and train_falling and widening else 0
        rising = len(recent) > self.patience and robust_slope(recent) > 0
        if self._strikes[label] < self.patience or not rising or label in self._reported:
            return []
        self._reported[label] = record.step
        now, then = sign * score, sign * best_score
        return [self.finding(record.step, record.mode,
                             f"overfitting: {label} went from its best {then:.4g} to {now:.4g} over the last "
                             f"{self._strikes[label]} evaluations (evaluation {record.step}, after training step "
                             f"{self._last_train_step}) while the training {self.loss} kept falling "
                             f"({train_then:.4g} -> {train:.4g}). Next: keep the checkpoint of the best evaluation "
                             f"(early stopping); add data, augmentation or regularisation",
                             (self.loss,) if not higher_is_better else (label.split(" ", 1)[1],),
                             gap=(score - train) if not higher_is_better else float(then - now),
                             validation=value, training=train, best=then)]


@dataclass
class Overtraining(Rule):
    """No relative improvement of the best loss by `delta` (a fraction of the best) within
    `patience_validation` evaluations, or, when `patience_train` is set, within that many training
    steps. Silent without evaluations unless `patience_train` is set.

    Why: further training only costs time (and, on validation, overfits).
    Typical causes: converged model, learning rate decayed to nothing, plateau.
    Try: stop (or checkpoint the best model), change the schedule.
    """

    code = "GP123"
    default_severity = Severity.INFO
    delta: float = 0.01
    patience_train: int | None = None
    patience_validation: int = 5
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
        if patience is None:
            return []
        best = self._best.get(mode)
        if best is None or value < best - self.delta * abs(best):
            self._best[mode] = value
            self._since[mode] = 0
            self._reported.pop(mode, None)
            return []
        self._since[mode] = self._since.get(mode, 0) + 1
        if self._since[mode] >= patience and mode not in self._reported:
            self._reported[mode] = record.step
            what = "training" if mode == "train" else "validation"
            unit = "steps" if mode == "train" else "evaluations"
            return [self.finding(record.step, mode,
                                 f"{what} {self.loss} has not improved by {100 * self.delta:g}% for "
                                 f"{self._since[mode]} {unit} (best {self._best[mode]:.4g}, now {value:.4g}, "
                                 f"{'step' if mode == 'train' else 'evaluation'} {record.step}). Next: stop here "
                                 f"or keep the best checkpoint; or change the learning-rate schedule",
                                 (self.loss,), best=self._best[mode], current=value)]
        return []
