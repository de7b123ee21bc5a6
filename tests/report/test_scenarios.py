"""The report of every scenario of the detection matrix (tests/rules/scenarios.py) is written with
every section drawn, opens in headless Chromium without a script error, and lists every finding
the probe raised. The MLP scenarios run by default (about 3 s each, most of it Chromium); the
others are marked slow."""

from __future__ import annotations

import pytest

from gradprobe.report import write_report_sections
from tests.rules.scenarios import HEALTHY, PATHOLOGIES, Scenario

from .browser import problems


def _runs_by_default(scenario: Scenario) -> bool:
    """Each planted pathology once (on the MLP) and the plain healthy MLP: about 45 s in all."""
    return scenario.model == "mlp" and not scenario.slow and (scenario.expect is not None or scenario.name == "healthy")


def _params(scenarios: list[Scenario]) -> list[object]:
    return [pytest.param(s, id=s.id, marks=[] if _runs_by_default(s) else [pytest.mark.slow]) for s in scenarios]


@pytest.mark.parametrize("scenario", _params(PATHOLOGIES + HEALTHY))
def test_scenario_report_is_complete_and_opens_cleanly(scenario: Scenario, tmp_path, viewer, screenshot_to):
    outcome = scenario.run(tmp_path / "run")
    report, failures = write_report_sections(tmp_path / "run")
    assert failures == []
    rendered = viewer.render(report, screenshot_to(f"report-scenario-{scenario.id}"))
    assert problems(rendered) == []
    raised = {f"{f.code} {f.rule}" for f in outcome.findings}
    assert {name for name in raised if name not in rendered.body_text} == set()
    if scenario.expect is not None:
        assert scenario.expect.rule in rendered.body_text
    if not outcome.findings:
        assert "No rule fired on this run." in rendered.body_text
