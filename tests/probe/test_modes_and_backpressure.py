"""step(mode=) for one call, and the bounded consumer queue under a writer that stalls."""

from __future__ import annotations

import threading
import time

import torch

from gradprobe import Probe, ProbeConfig, StatsComputer, open_run
from gradprobe.probe.config import builtin_collections
from gradprobe.probe.tensor_table import TensorTable
from gradprobe.stats.backends import ResultsRingFull
from gradprobe.store import RunWriter

from .helpers import TinyMLP, batch


def test_interleaved_train_and_eval_steps_count_each_mode_apart(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rounds = 3
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
        for r in range(rounds):
            for i in range(5):
                x, y = batch(10 * r + i)
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad()
                probe.step(loss=loss)
                assert probe.mode == "train" and probe.current_step("train") == 5 * r + i + 1
            with torch.no_grad():
                x, y = batch(1000 + r)
                probe.step(loss=torch.nn.functional.cross_entropy(model(x), y), mode="eval")
            assert probe.mode == "train"  # mode= applied to that call only
            assert probe.current_step("train") == 5 * (r + 1) and probe.current_step("eval") == r + 1
    run = open_run(tmp_path / "run")
    scalars = run.scalars(names=["loss"])
    assert sorted(scalars[scalars["mode"] == "train"].step) == list(range(5 * rounds))
    assert sorted(scalars[scalars["mode"] == "eval"].step) == list(range(rounds))
    grads = run.stats("grad")
    assert set(grads["mode"]) == {"train"} and sorted(set(grads.step)) == list(range(5 * rounds))
    # The records interleave as the loop ran: five train steps, then one evaluation.
    order = scalars.sort_values("time", kind="stable")[["mode", "step"]].drop_duplicates()
    assert [m for m in order["mode"]] == (["train"] * 5 + ["eval"]) * rounds
    assert run.meta["steps"] == {"train": 5 * rounds, "eval": rounds, "predict": 0}


def test_set_mode_is_the_persistent_switch(tmp_path):
    model = TinyMLP()
    with Probe(model, None, out_dir=tmp_path / "run", rules=[]) as probe:
        probe.set_mode("eval")
        for _ in range(3):
            probe.step(loss=1.0)
        probe.step(loss=2.0, mode="predict")
        probe.step(loss=3.0)
        assert probe.mode == "eval"
        assert (probe.current_step("train"), probe.current_step("eval"), probe.current_step("predict")) == (0, 4, 1)


def test_a_stalled_writer_never_blocks_training_and_drops_with_a_count(tmp_path, monkeypatch):
    release = threading.Event()
    writes = []
    original = RunWriter.write

    def stalled_write(self, table, batch):  # the disk hangs until released
        writes.append(table)
        release.wait()
        original(self, table, batch)

    monkeypatch.setattr(RunWriter, "write", stalled_write)
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    config = ProbeConfig(collections=builtin_collections("minimal"), max_queued_items=4, max_queue_wait_seconds=0.001)
    steps = 40
    probe = Probe(model, opt, out_dir=tmp_path / "run", config=config, rules=[])
    for step in range(steps):  # completes although nothing is written: items beyond the bound are dropped
        x, y = batch(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        probe.step(loss=loss)
    # The consumer is stuck in its first write (the profiler's thread in its own); the training loop went on.
    deadline = time.monotonic() + 10
    while not [table for table in writes if table not in ("system", "phases")] and time.monotonic() < deadline:
        time.sleep(0.02)  # the consumer gathers items for a moment before its first write
    assert len([table for table in writes if table not in ("system", "phases")]) == 1
    release.set()
    probe.close()
    run = open_run(tmp_path / "run")
    dropped = run.meta["dropped"]
    assert dropped.get("scalars", 0) > 0 and run.events("dropped")[0]["items"] == dropped
    # Kept: the batch being written (the consumer takes what is queued, at most 4 + 1) and the 4
    # queued behind it; the rest dropped, and every kept one written once.
    grad_items = sum(config.collections[0].due("train", s) for s in range(steps))
    kept = steps + grad_items - sum(dropped.values())
    assert 5 <= kept <= 9
    assert len(run.scalars(names=["loss"])) == steps - dropped["scalars"]
    assert len(set(run.stats("grad").step)) == grad_items - dropped.get("grad", 0)
    assert run.meta["status"] == "completed"


def test_no_drops_when_the_consumer_keeps_up(tmp_path):
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:
        for step in range(5):
            x, y = batch(step)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    run = open_run(tmp_path / "run")
    assert run.meta["dropped"] == {} and not run.events("dropped")


def test_a_full_results_ring_drops_that_launch_with_a_count(tmp_path, monkeypatch):
    """What the probe does when a GPU engine's pinned result ring is full (simulated here: the
    real ring is tested on a GPU in tests/stats/test_gpu.py): that kind's measurement is dropped
    and counted, the step goes on, nothing is warned or raised."""
    original = StatsComputer.launch_table
    calls = {"n": 0}

    def every_third_launch_finds_the_ring_full(self, table, *, histogram, backend):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise ResultsRingFull("all result slots hold unread results")
        return original(self, table, histogram=histogram, backend=backend)

    monkeypatch.setattr(StatsComputer, "launch_table", every_third_launch_finds_the_ring_full)
    # The CPU's one-call path has no results ring: take the table path, as a GPU does.
    monkeypatch.setattr(TensorTable, "measure_cpu", lambda self, attr, histogram, threads: None)
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    config = ProbeConfig(collections=builtin_collections("minimal")[:1])
    with Probe(model, opt, out_dir=tmp_path / "run", config=config, rules=[]) as probe:
        for step in range(12):
            x, y = batch(step)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    run = open_run(tmp_path / "run")
    due = [s for s in range(12) if config.collections[0].due("train", s)]
    recorded = sorted(set(run.stats("grad").step))
    dropped = run.meta["dropped"].get("grad (results ring full)", 0)
    assert dropped == calls["n"] // 3 > 0 and len(recorded) == len(due) - dropped
    assert set(recorded) < set(due) and not run.events("error")
