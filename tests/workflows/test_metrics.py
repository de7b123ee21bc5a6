"""Accuracy, macro F1 and the confusion matrix against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gradprobe.workflows.metrics import classification_metrics


def test_metrics_match_a_hand_computed_example():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(labels, predictions, 3)
    assert m.accuracy == pytest.approx(4 / 6)
    # F1: class 0: p=1, r=2/3 -> 0.8; class 1: p=1/2, r=1/2 -> 0.5; class 2: p=1/2, r=1 -> 2/3
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_a_class_never_seen_nor_predicted_counts_as_zero_f1():
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), 3)
    assert m.accuracy == 1.0 and m.macro_f1 == pytest.approx(2 / 3)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="same non-empty shape"):
        classification_metrics(np.array([0, 1]), np.array([0]), 3)
