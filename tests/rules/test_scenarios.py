"""The scenario matrix (tests/rules/scenarios.py): every planted pathology is named by the intended rule,
at the intended module or tensor, within its documented delay; no healthy run fires anything under
gradprobe.rules.default(). The BERT, GPT-2 and LSTM runs are marked slow (a minute or more each on two
busy cores)."""

from __future__ import annotations

import pytest

from .scenarios import HEALTHY, PATHOLOGIES, Scenario, judge


def _params(scenarios: list[Scenario]):
    marks = []
    for scenario in scenarios:
        extra = []
        if scenario.slow:
            extra.append(pytest.mark.slow)
        if scenario.needs_probe_fix:
            extra.append(pytest.mark.xfail(strict=True, reason=scenario.needs_probe_fix))
        marks.append(pytest.param(scenario, id=scenario.id, marks=extra))
    return marks


@pytest.mark.parametrize("scenario", _params(PATHOLOGIES))
def test_planted_pathology_is_named_by_the_intended_rule_in_time(scenario: Scenario, tmp_path):
    outcome = scenario.run(tmp_path / "run")
    verdict = judge(scenario, outcome)
    assert verdict.ok, f"{scenario.id}: {verdict.detail}"
    expect = scenario.expect
    intended = next(f for f in outcome.findings if f.rule == expect.rule and f.mode == expect.mode
                    and (expect.where is None or expect.where in f.tensors))
    # What, when and one next step, in the message itself.
    assert str(intended.step) in intended.message and "Next:" in intended.message, intended.message


@pytest.mark.parametrize("scenario", _params(HEALTHY))
def test_healthy_run_fires_nothing(scenario: Scenario, tmp_path):
    verdict = judge(scenario, scenario.run(tmp_path / "run"))
    assert verdict.ok, f"{scenario.id} fired: {verdict.detail}"


def test_every_pathology_runs_on_two_models_and_healthy_runs_cover_the_families():
    models: dict[str, set[str]] = {}
    for scenario in PATHOLOGIES:
        models.setdefault(scenario.name, set()).add(scenario.model)
    assert all(len(kinds) >= 2 for kinds in models.values()), models
    assert {s.model for s in HEALTHY} >= {"mlp", "cnn", "bert", "gpt2", "lstm"}
    assert any(s.plan.eval_every for s in HEALTHY if s.model == "bert")
