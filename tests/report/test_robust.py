"""The report is written whatever the run holds: degenerate runs (all-zero gradients, all-NaN
statistics, one step, evaluations only, nothing measured) open in headless Chromium without a
script error, and a section that raises becomes a note while the rest of the page is written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from gradprobe.cli import main as gradprobe_main
from gradprobe.report import compare, single, write_report, write_report_sections
from gradprobe.report.page import describe_failure
from tests.probe.helpers import TinyMLP

from .browser import SECTIONS, problems
from .runs import SELECTS_NOTHING, NoParameters, dead_relu_mlp, nan_mlp, train_degenerate


def _no_parameters(out: Path) -> Path:
    model = NoParameters()
    return train_degenerate(out, model, steps=3, parameters=[model.scale])


# name -> (how to make the run, what its report must say)
DEGENERATE: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "all-zero gradients": (lambda out: train_degenerate(out, dead_relu_mlp(), steps=4),
                           ("gradient of fc1.weight: all zero at each of its 4 recorded steps",)),
    "all-NaN statistics": (lambda out: train_degenerate(out, nan_mlp(), steps=3),
                           ("gradient of fc1.weight: no finite non-zero value at any of its 3 recorded steps",
                            "Non-finite values: first appearance")),
    "a single step": (lambda out: train_degenerate(out, TinyMLP(), steps=1), ("eval 1, train 1",)),
    "evaluations only": (lambda out: train_degenerate(out, TinyMLP(), steps=3, train_steps=False),
                         ("eval 3", "No grad statistics were recorded.")),
    "a model without parameters": (_no_parameters, ("0 in 0 tensors", "No grad statistics were recorded.")),
    "collections that select nothing": (
        lambda out: train_degenerate(out, TinyMLP(), steps=3, config=SELECTS_NOTHING),
        ("No grad statistics were recorded.", "No gradient histograms were recorded.",
         "No activation statistics were recorded")),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
# The probe's own step hook fails on a model without parameters (a probe bug, not the report's);
# the run is still written and is what this test reports on.
@pytest.mark.filterwarnings("ignore:gradprobe. optimizer step hook failed:RuntimeWarning")
def test_degenerate_run_report_is_written_and_opens_cleanly(name, tmp_path, viewer, screenshot_to):
    make, expected = DEGENERATE[name]
    run = make(tmp_path / "run")
    report, failures = write_report_sections(run)
    assert failures == []
    rendered = viewer.render(report, screenshot_to(f"report-degenerate-{name}"))
    assert problems(rendered) == []
    for text in expected:
        assert text in rendered.body_text


def test_report_command_on_all_zero_gradients_exits_0_silently(tmp_path, capsys):
    """The issue's case: findings name layers whose gradients are all zero (dead ReLUs)."""
    run = train_degenerate(tmp_path / "run", dead_relu_mlp(), steps=4)
    capsys.readouterr()
    assert gradprobe_main(["report", str(run)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"wrote {run / 'report.html'}" and err == ""


def _broken_section(page, data):  # type: ignore[no-untyped-def]
    page.figure(go.Figure(go.Scatter(x=[0], y=[1])))  # drawn before it fails: must not stay in the page
    raise ValueError("planted <b>failure</b>\nsecond line")


PLANTED_NOTE = ("The section Magnitude histograms could not be drawn (ValueError: planted &lt;b&gt;failure&lt;/b&gt; "
                "second line); the rest of the report is written.")


def test_a_section_that_raises_becomes_a_note_and_the_rest_is_written(tmp_path, monkeypatch, viewer):
    run = train_degenerate(tmp_path / "run", TinyMLP(), steps=3)
    monkeypatch.setattr(single, "histograms_section", _broken_section)
    with pytest.warns(RuntimeWarning, match=r"without 1 section\(s\).*section 'Magnitude histograms' failed "
                                            r"\(ValueError: planted <b>failure</b> second line, at test_robust"):
        report = write_report(run)
    html = report.read_text()
    assert PLANTED_NOTE in html
    assert html.rstrip().endswith("</html>") and "Traceback" not in html and "test_robust" not in html
    # Every figure placeholder has its data and no data is left without a placeholder.
    placeholders = re.findall(r'<div class="gp-plot" id="(plot-\d+)">', html)
    data = re.findall(r'<script type="application/json" id="(plot-\d+)-data">', html)
    assert placeholders == data and len(placeholders) > 5
    rendered = viewer.render(report)
    assert rendered.errors == [] and rendered.plots_drawn == rendered.plots
    assert all(title in rendered.body_text for title in SECTIONS)
    # the sections after the failed one are drawn in full
    assert "No NaN or Inf was recorded in any tensor." in rendered.body_text
    assert "The profiler raised no finding." in rendered.body_text  # the last section


def test_report_command_names_the_failed_section_on_stderr_and_exits_0(tmp_path, monkeypatch, capsys):
    run = train_degenerate(tmp_path / "run", TinyMLP(), steps=2)
    monkeypatch.setattr(single, "losses_section", _broken_section)
    capsys.readouterr()
    assert gradprobe_main(["report", str(run)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"wrote {run / 'report.html'}"
    assert re.fullmatch(r"gradprobe report: section 'Losses and metrics' failed \(ValueError: planted <b>failure</b> "
                        r"second line, at test_robust\.py:\d+ in _broken_section\); shown as a note in the page\n", err)
    assert "The section Losses and metrics could not be drawn" in (run / "report.html").read_text()


def test_a_comparison_section_that_raises_becomes_a_note(tmp_path, monkeypatch):
    first = train_degenerate(tmp_path / "a", TinyMLP(), steps=2)
    second = train_degenerate(tmp_path / "b", TinyMLP(), steps=2)
    monkeypatch.setattr(compare, "_scalars_section", lambda page, runs, names: _broken_section(page, None))
    report, failures = write_report_sections([first, second])
    assert [f.title for f in failures] == ["Losses and metrics"]
    html = report.read_text()
    assert "The section Losses and metrics could not be drawn (ValueError: planted" in html
    assert "Chosen layers&#x27; gradient norms" in html and "Findings that differ" in html


def test_a_failure_names_the_line_that_met_the_data_not_the_library_that_raised():
    def reduce_nothing() -> float:
        return float(np.zeros(0).min())  # the crash, raised inside numpy

    with pytest.raises(ValueError) as raised:
        reduce_nothing()
    failure = describe_failure("Magnitude histograms", raised.value)
    assert re.fullmatch(r"test_robust\.py:\d+ in reduce_nothing", failure.where), failure.where
    assert failure.error == "ValueError: zero-size array to reduction operation minimum which has no identity"
