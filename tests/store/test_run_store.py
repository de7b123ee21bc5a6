"""The run directory survives crashes and failing disks, and is readable while being written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

import gradprobe
from gradprobe import Probe, RunDirectoryError, open_run

HERE = Path(__file__).parent


def test_kill_9_loses_at_most_the_open_part_and_live_reads_work(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(HERE / "train_forever.py"), str(out)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        live_steps = 0
        while time.time() < deadline and live_steps < 30:  # read while it trains
            live_steps = len(open_run(out).steps())
            time.sleep(0.1)
        assert live_steps >= 30
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run = open_run(out)
    assert run.meta["status"] == "running"  # it never closed
    steps = run.steps()
    assert len(steps) >= live_steps and (steps == range(len(steps))).all()  # no gaps in what survived
    stats = run.stats("grad")
    per_step = stats.groupby("step").size()
    assert (per_step == 4).all(), "every surviving step has every tensor: parts are all-or-nothing"
    for part in (out / "stats" / "rank0").iterdir():  # complete parts are valid Parquet
        if part.name.startswith("part-"):
            pq.read_metadata(part)
    assert [e["type"] for e in run.events()][0] == "start"


def test_failing_disk_warns_keeps_training_and_retries(tmp_path, monkeypatch):
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    real_write = pq.write_table
    failing = {"on": True}

    def write_table(*args, **kwargs):
        if failing["on"]:
            raise OSError(28, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    with pytest.warns(RuntimeWarning, match="writing the run directory failed"):
        probe = Probe(model, opt, out_dir=tmp_path / "run", config={"store": {"flush_seconds": 0.05}})
        for _ in range(5):
            model(torch.randn(3, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=1.0)
        probe.flush()
    assert not list((tmp_path / "run" / "stats").glob("rank0/part-*"))
    failing["on"] = False  # the disk recovers: the kept rows are written at the next flush
    probe.close()
    run = open_run(tmp_path / "run")
    assert list(run.steps()) == [0, 1, 2, 3, 4], "no recorded step was lost"
    assert run.meta["truncated"] is True and run.meta["status"] == "completed"


def test_existing_run_is_refused_unless_told(tmp_path):
    model = torch.nn.Linear(2, 2)
    out = tmp_path / "run"
    Probe(model, out_dir=out).close()
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        Probe(model, out_dir=out)
    with Probe(model, out_dir=out, exist="append") as probe:
        probe.step(loss=2.0)
    assert len(open_run(out).events("start")) == 2
    with Probe(model, out_dir=out, exist="overwrite") as probe:
        probe.step(loss=3.0)
    run = open_run(out)
    assert len(run.events("start")) == 1 and run.scalars(["loss"]).value.tolist() == [3.0]


def test_unusable_directory_is_a_clear_error_at_construction(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunDirectoryError, match="cannot write the run directory"):
        Probe(torch.nn.Linear(2, 2), out_dir=blocker / "run")
    with pytest.raises(ValueError, match="exist must be"):
        Probe(torch.nn.Linear(2, 2), out_dir=tmp_path / "r", exist="keep")


def test_reader_rejects_non_runs_and_unknown_stats(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a gradprobe run"):
        open_run(tmp_path)
    with Probe(torch.nn.Linear(2, 2), out_dir=tmp_path / "run") as probe:
        probe.step(loss=1.0)
    with pytest.raises(ValueError, match="unknown statistic 'norm'"):
        open_run(tmp_path / "run").stats(stats=["norm"])


def test_meta_records_structure_versions_and_hardware(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    with Probe(model, out_dir=tmp_path / "run", config="minimal") as probe:
        probe.step()
    meta = open_run(tmp_path / "run").meta
    assert meta["schema_version"] == gradprobe.store.SCHEMA_VERSION
    assert [m["type"] for m in meta["model"]["modules"]] == ["Sequential", "Linear", "ReLU"]
    assert meta["parameters"][0] == {"name": "0.weight", "shape": [4, 3], "dtype": "float32", "requires_grad": True,
                                     "aliases": []}
    assert meta["versions"]["torch"] == torch.__version__ and meta["hardware"]["cpus"] > 0
    assert meta["config"]["preset"] == "minimal" and meta["status"] == "completed" and meta["end_time"] > 0
