"""Reports of real tiny runs in headless Chromium: every plot draws, no script error, no request
leaves the file, run-derived HTML is shown as text; a screenshot of each is kept."""

from __future__ import annotations

import pytest

from gradprobe.report import write_report

from .browser import SECTIONS, render
from .runs import HOSTILE, HOSTILE_METRIC


def _check_clean(rendered, minimum_plots: int) -> None:  # type: ignore[no-untyped-def]
    print(f"screenshot: {rendered.screenshot}")
    assert rendered.screenshot is not None and rendered.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rendered.errors == []
    assert rendered.outside_requests == []
    assert rendered.dialogs == []
    assert rendered.plots >= minimum_plots
    assert rendered.plots_drawn == rendered.plots


@pytest.mark.parametrize("name, minimum_plots", [("healthy", 14), ("nan", 10)])
def test_run_report_draws_every_plot_offline(runs, browser, artifacts, name, minimum_plots):
    report = write_report(getattr(runs, name))
    assert report == getattr(runs, name) / "report.html"
    rendered = render(browser, report, artifacts / f"report-{name}.png")
    _check_clean(rendered, minimum_plots)
    for title in SECTIONS:
        assert title in rendered.body_text
    # Model order on the heatmap axes: fc1 before fc2 before head, as the model defines them.
    gradients = rendered.heatmap_rows[0]
    assert [t for t in gradients if t.endswith(".weight")] == ["fc1.weight", "fc2.weight", "head.weight"]


def test_comparison_overlays_runs_and_lists_differing_findings(runs, browser, artifacts):
    report = write_report([runs.healthy, runs.nan])
    assert report == runs.healthy / "report-compare.html"
    rendered = render(browser, report, artifacts / "report-compare.png")
    _check_clean(rendered, 5)
    assert "GP100" in rendered.body_text  # the NaN run's finding, which the healthy run lacks
    legends = set(rendered.tick_labels)
    assert {"healthy", "nan"} <= legends and "healthy train" in legends and "nan eval" in legends


def test_hostile_names_are_shown_as_text(runs, browser, artifacts):
    report = write_report(runs.hostile)
    source = report.read_text()
    assert HOSTILE not in source and HOSTILE_METRIC not in source
    rendered = render(browser, report, artifacts / "report-hostile.png")
    _check_clean(rendered, 8)
    assert f"{HOSTILE}.weight" in rendered.tick_labels  # a heatmap row label, as the characters it has
    assert f"metric/{HOSTILE_METRIC}" in rendered.body_text  # the final metrics table


def test_a_request_leaving_the_file_is_caught(browser, tmp_path):
    """The offline check itself can fail: a page that loads an image from the network is reported."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://198.51.100.7/x.png"><script>nosuchfunction()</script></body></html>')
    rendered = render(browser, page)
    assert rendered.outside_requests == ["http://198.51.100.7/x.png"]
    assert any("nosuchfunction" in e for e in rendered.errors)
