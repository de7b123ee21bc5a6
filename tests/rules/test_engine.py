"""RuleEngine on its own: no probe, no store; events through emit, findings through on_finding,
facts as a record, a stop request, and replay."""

from __future__ import annotations

import pytest

from gradprobe.records import ModelFacts
from gradprobe.rules import Finding, RuleEngine
from gradprobe.rules.initialization import PoorWeightInitialization
from gradprobe.rules.nonfinite import NonFinite
from gradprobe.rules.weights import AllZero

from .records import scalars, stats_record


def test_replay_emits_events_hands_findings_on_and_deduplicates():
    events, handed = [], []
    engine = RuleEngine([NonFinite(), AllZero()], emit=events.append, on_finding=handed.append)
    records = [scalars(0, loss=1.0), scalars(1, loss=float("nan")), scalars(2, loss=float("nan")),
               stats_record(3, "weight", {"fc.weight": {"zeros": 100}})]
    findings = engine.replay(records)
    assert [f.code for f in findings] == ["GP100", "GP111"] and handed == findings
    assert [e["code"] for e in events if e["type"] == "finding"] == ["GP100", "GP111"]
    assert all(isinstance(f, Finding) for f in findings) and findings[0].step == 1


def test_facts_arrive_as_a_record_before_the_steps():
    rule = PoorWeightInitialization()
    engine = RuleEngine([rule])
    engine.replay([ModelFacts({"fc.weight": (4, 8)}, {"fc": "Linear"})])
    assert rule.shapes == {"fc.weight": (4, 8)}
    given = PoorWeightInitialization(shapes={"other": (1,)})  # given explicitly: kept
    RuleEngine([given], facts=ModelFacts({"fc.weight": (4, 8)})).close()
    assert given.shapes == {"other": (1,)}


def test_first_stop_request_wins_and_replay_refuses_non_records():
    engine = RuleEngine([])
    assert engine.stop_reason is None
    engine.request_stop("first")
    engine.request_stop("second")
    assert engine.stop_reason == "first"
    with pytest.raises(TypeError, match="not a record: dict"):
        engine.replay([{"step": 0}])
