"""The deep capture window: by configuration and by a rule's action, a Chrome trace and the top
operators of exactly those steps."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch

from gradprobe.profiler import CaptureSteps, top_operators
from gradprobe.records import PhaseRecord
from gradprobe.rules import Finding, Rule

from .helpers import train


def batches(n):
    return [(torch.randn(8, 16), torch.randn(8, 1)) for _ in range(n)]


def test_profile_steps_writes_a_trace_and_the_top_operators_of_those_steps(tmp_path):
    _, run = train(tmp_path / "run", batches(8), rules=[], profiler={"profile_steps": [2, 5], "top_operators": 10})
    (event,) = run.events("deep_capture")
    assert (event["start_step"], event["stop_step"]) == (2, 5)
    trace = json.loads((run.path / event["trace"]).read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert "aten::addmm" in names  # the Linear layers' matmuls
    operators = top_operators(run.path)
    assert 0 < len(operators) <= 10
    assert set(operators[["start_step", "stop_step", "rank"]].itertuples(index=False, name=None)) == {(2, 5, 0)}
    addmm = operators[operators["operator"] == "aten::addmm"]
    # 3 steps x 2 Linear layers forward; self CPU time of a real op is positive, never above its total
    assert len(addmm) == 1 and addmm["calls"].iloc[0] >= 6 and addmm["self_cpu_seconds"].iloc[0] > 0
    assert (operators["self_cpu_seconds"] <= operators["cpu_seconds"] + 1e-9).all()


@dataclass
class SlowStepAt(Rule):
    """Fires once, on the phases of step `at` (a stand-in for any rule)."""

    code = "GPX01"
    at: int = 3

    def on_phases(self, record: PhaseRecord) -> list[Finding]:
        return [self.finding(record.step, record.mode, "slow")] if record.step == self.at else []


def test_a_rules_finding_starts_a_capture_of_the_next_steps(tmp_path):
    findings, run = train(tmp_path / "run", batches(40), rules=[SlowStepAt()], actions=[CaptureSteps(steps=2)],
                          each_step=lambda step: time.sleep(0.02))
    assert [f.step for f in findings] == [3]
    (event,) = run.events("deep_capture")
    assert event["stop_step"] - event["start_step"] == 2 and event["start_step"] > 3
    assert (run.path / event["trace"]).exists()
    assert len(top_operators(run.path)) > 0


def test_no_capture_no_table(tmp_path):
    _, run = train(tmp_path / "run", batches(2), rules=[])
    assert top_operators(run.path).empty and not run.events("deep_capture")
