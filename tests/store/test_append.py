"""exist="append" continues step numbers as a new session recorded in meta.json."""

from __future__ import annotations

import torch

import gradprobe
from tests.probe.helpers import TinyMLP, train_steps


def _session(path, exist: str, steps: int, eval_steps: int = 0) -> None:
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradprobe.Probe(model, optimizer, out_dir=path, exist=exist) as probe:
        train_steps(model, optimizer, probe, steps)
        probe.set_mode("eval")
        for _ in range(eval_steps):
            probe.step(loss=torch.tensor(1.0))


def test_append_continues_steps_per_mode_without_duplicate_rows(tmp_path):
    run_dir = tmp_path / "run"
    _session(run_dir, "error", 4, eval_steps=2)
    _session(run_dir, "append", 3, eval_steps=1)
    run = gradprobe.open_run(run_dir)
    assert list(run.steps("train")) == list(range(7))
    assert list(run.steps("eval")) == [0, 1, 2]
    scalars = run.scalars(["loss"], mode="train")
    assert not scalars.duplicated(["step", "name"]).any()
    grads = run.stats("grad")
    assert not grads.duplicated(["step", "mode", "tensor"]).any()
    sessions = run.meta["sessions"]
    assert [s["first_step"]["train"] for s in sessions] == [0, 4]
    assert [s["first_step"]["eval"] for s in sessions] == [0, 2]
    assert all("config" in s and s["start_time"] > 0 for s in sessions)
    assert run.meta["steps"]["train"] == 7 and run.status == "completed"


def test_append_to_a_killed_run_continues_after_its_last_recorded_step(tmp_path):
    run_dir = tmp_path / "run"
    _session(run_dir, "error", 5)
    # A killed run never wrote its closing step counts: the parts decide.
    meta = run_dir / "meta.json"
    import json

    data = json.loads(meta.read_text())
    data.pop("steps")
    data["status"] = "running"
    meta.write_text(json.dumps(data))
    _session(run_dir, "append", 2)
    assert list(gradprobe.open_run(run_dir).steps()) == list(range(7))


def test_overwrite_starts_again_at_zero(tmp_path):
    run_dir = tmp_path / "run"
    _session(run_dir, "error", 3)
    _session(run_dir, "overwrite", 2)
    run = gradprobe.open_run(run_dir)
    assert list(run.steps()) == [0, 1] and len(run.meta["sessions"]) == 1
