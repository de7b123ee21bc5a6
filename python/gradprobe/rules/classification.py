"""Rules on labels and predictions the user passes (Probe.observe_predictions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Finding, Rule


@dataclass
class ClassImbalance(Rule):
    """Label counts differ by more than `threshold_imbalance` times, or a class is mispredicted
    more than `threshold_misprediction` of the time (over the labels seen so far, per mode).

    Why: the model learns the majority class; minority classes are ignored.
    Try: re-weight the loss or resample; report per-class metrics (F1) rather than accuracy.
    """

    code = "GP150"
    threshold_imbalance: float = 10.0
    threshold_misprediction: float = 0.7
    min_samples: int = 100
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _wrong: dict[str, int] = field(default_factory=dict, repr=False)
    _reported: dict[str, int] = field(default_factory=dict, repr=False)

    def on_predictions(self, step: int, mode: str, labels: np.ndarray, predictions: np.ndarray) -> list[Finding]:
        for label, prediction in zip(labels.tolist(), predictions.tolist()):
            self._counts[str(label)] = self._counts.get(str(label), 0) + 1
            self._wrong[str(label)] = self._wrong.get(str(label), 0) + int(label != prediction)
        total = sum(self._counts.values())
        if total < self.min_samples:
            return []
        found = []
        counts = self._counts
        if len(counts) >= 2 and max(counts.values()) > self.threshold_imbalance * min(counts.values()) \
                and "imbalance" not in self._reported:
            self._reported["imbalance"] = step
            found.append(self.finding(step, mode, f"label counts are imbalanced by step {step}: "
                                                  f"{dict(sorted(counts.items()))}. "
                                            f"Next: re-weight the loss or resample; report per-class metrics",
                                      (), ratio=max(counts.values()) / min(counts.values())))
        for label, n in counts.items():
            rate = self._wrong[label] / n
            if n >= 10 and rate > self.threshold_misprediction and f"mis:{label}" not in self._reported:
                self._reported[f"mis:{label}"] = step
                found.append(self.finding(step, mode, f"class {label} is mispredicted {100 * rate:.0f}% of the time "
                                                      f"(by step {step}). "
                                                          f"Next: re-weight the loss for it or add its examples",
                                          (label,), misprediction=rate))
        return found


@dataclass
class Confusion(Rule):
    """The normalised confusion matrix has a diagonal entry below `min_diag` or an off-diagonal
    entry above `max_off_diag` (over the predictions seen so far, per mode).

    Why: shows which classes the model confuses with which.
    Try: more data for the confused classes, check their labels for noise.
    """

    code = "GP151"
    min_diag: float = 0.9
    max_off_diag: float = 0.1
    min_samples: int = 100
    _matrix: dict[str, int] = field(default_factory=dict, repr=False)
    _reported: bool = False

    def on_predictions(self, step: int, mode: str, labels: np.ndarray, predictions: np.ndarray) -> list[Finding]:
        for label, prediction in zip(labels.tolist(), predictions.tolist()):
            key = f"{label}->{prediction}"
            self._matrix[key] = self._matrix.get(key, 0) + 1
        if sum(self._matrix.values()) < self.min_samples or self._reported:
            return []
        classes = sorted({k.split("->")[0] for k in self._matrix} | {k.split("->")[1] for k in self._matrix})
        index = {c: i for i, c in enumerate(classes)}
        matrix = np.zeros((len(classes), len(classes)))
        for key, n in self._matrix.items():
            a, b = key.split("->")
            matrix[index[a], index[b]] += n
        rows = matrix.sum(axis=1, keepdims=True)
        normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        diag = np.diag(normalised)
        off = normalised - np.diag(diag)
        if (diag[rows[:, 0] > 0] < self.min_diag).any() or (off > self.max_off_diag).any():
            self._reported = True
            i, j = np.unravel_index(np.argmax(off), off.shape)
            return [self.finding(step, mode, f"confusion: class {classes[i]} predicted as {classes[j]} "
                                             f"{100 * off[i, j]:.0f}% of the time (diagonal min {diag.min():.2f}; by "
                                             f"step {step}). "
                                             f"Next: look at those examples' labels; add data for the confused classes",
                                 (classes[i], classes[j]), off_diagonal=float(off[i, j]),
                                 diagonal_min=float(diag.min()))]
        return []
