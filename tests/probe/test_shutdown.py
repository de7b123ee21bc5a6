"""close() is bounded by ProbeConfig.close_timeout_seconds and records what it did not run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

import gradprobe
from gradprobe.actions import Action, ActionContext, ActionRunner
from gradprobe.rules import Finding
from gradprobe.rules.base import Severity

from .helpers import TinyMLP, batch


@dataclass
class Stuck(Action):
    """An action whose server never answers (until released)."""

    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    cooldown_seconds: float = 0.0
    retries: int = 1

    def run(self, finding: Finding, context: ActionContext) -> None:
        self.started.set()
        self.release.wait(60)


def _finding(step: int) -> Finding:
    return Finding("GP100", "NonFinite", Severity.ERROR, step, "train", f"planted {step}")


def test_the_runner_records_every_action_it_did_not_run():
    events: list[dict] = []
    action = Stuck()
    runner = ActionRunner([action], events.append, ActionContext())
    for step in range(4):
        runner.submit(_finding(step))
    assert action.started.wait(10)
    runner.close(timeout=0.2)
    dropped = [e for e in events if e["type"] == "action_dropped"]
    assert sorted(e["step"] for e in dropped) == [0, 1, 2, 3]  # one running, three queued
    assert "still running" in next(e["reason"] for e in dropped if e["step"] == 0)
    assert runner.dropped == 4
    action.release.set()


def test_a_runner_that_finishes_in_time_drops_nothing():
    events: list[dict] = []
    action = Stuck()
    action.release.set()
    runner = ActionRunner([action], events.append, ActionContext())
    for step in range(3):
        runner.submit(_finding(step))
    runner.close(timeout=30)
    assert [e["type"] for e in events] == ["action"] * 3 and runner.dropped == 0


def test_probe_close_waits_at_most_its_timeout_for_a_dead_server_and_says_so(tmp_path):
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    action = Stuck()
    probe = gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run", rules="GP100", actions=[action],
                            config={"close_timeout_seconds": 0.3})
    for step in range(3):
        x, y = batch(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        probe.step(loss=loss * float("nan") if step == 1 else loss)
    probe.flush()
    assert action.started.wait(10)
    probe.close()
    action.release.set()
    run = gradprobe.open_run(tmp_path / "run")
    assert run.status == "completed"
    assert [e["code"] for e in run.events("finding")] == ["GP100"]
    (dropped,) = run.events("action_dropped")
    assert dropped["code"] == "GP100" and dropped["step"] == 1 and "0.3 s" in dropped["reason"]
    assert run.meta["config"]["close_timeout_seconds"] == 0.3


class SlowObserver:
    """An observer (e.g. a slow rule) that holds the consumer thread until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def on_scalars(self, record) -> None:
        self.started.set()
        self.release.wait(60)


def test_close_stops_waiting_for_a_stuck_consumer_and_counts_what_it_left(tmp_path):
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    observer = SlowObserver()
    probe = gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run", rules=[], observers=[observer],
                            config={"close_timeout_seconds": 0.3})
    for step in range(4):
        x, y = batch(step)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
        probe.step()
    assert observer.started.wait(10)
    probe.close()
    observer.release.set()
    run = gradprobe.open_run(tmp_path / "run")
    (left,) = run.events("unprocessed")
    assert left["items"]["scalars"] >= 3  # steps 1-3 were still queued behind step 0
    assert run.meta["truncated"] is True and run.status == "completed"


def test_close_stops_waiting_for_a_stuck_disk_and_marks_the_run_truncated(tmp_path, monkeypatch):
    from gradprobe.store.ownership import live_writers
    from gradprobe.store.writer import RunWriter

    disk = threading.Event()
    original = RunWriter._write_part

    def stuck_write(self, name):
        disk.wait(60)
        original(self, name)

    monkeypatch.setattr(RunWriter, "_write_part", stuck_write)
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run", rules=[],
                            config={"close_timeout_seconds": 0.3})
    x, y = batch(0)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    probe.step()
    probe.close()
    assert live_writers(tmp_path / "run") == 0  # the lock is released although the thread is stuck
    meta = gradprobe.open_run(tmp_path / "run").meta
    disk.set()
    run = gradprobe.open_run(tmp_path / "run")
    assert [e["timeout_seconds"] for e in run.events("writer_timeout")] == [0.3]
    assert meta["truncated"] is True and meta["status"] == "completed"
