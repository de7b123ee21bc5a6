"""Classification metrics computed from labels and predictions: accuracy, macro F1, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassificationMetrics:
    accuracy: float
    macro_f1: float
    confusion: np.ndarray  # [true class, predicted class] counts

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> ClassificationMetrics:
    """Accuracy, macro F1 (an absent class with no predictions counts as F1 0) and the confusion matrix."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must be the same non-empty shape")
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    denominator = predicted + actual
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(num_classes), where=denominator > 0)
    return ClassificationMetrics(float(true_positive.sum() / labels.size), float(f1.mean()), confusion)
