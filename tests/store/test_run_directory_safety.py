"""Run directories are safe: overwrite touches only what gradprobe wrote, a killed run is told apart
from a running one, and every unreadable part is named, counted and reported (never skipped silently)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gradprobe import Probe, RunDirectoryError, open_run
from gradprobe.store.reader import RunCorruptError

HERE = Path(__file__).parent


def record(out: Path, steps: int = 6) -> Path:
    """A short run whose tables are split into one part per step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=out, config={"store": {"flush_rows": 1}}) as probe:
        for _ in range(steps):
            model(torch.randn(3, 4)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            probe.step(loss=torch.tensor(1.0))
            probe.flush()
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradprobe.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})


def corrupt_truncate(part: Path) -> None:
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])


def corrupt_garbage(part: Path) -> None:
    part.write_bytes(os.urandom(part.stat().st_size))


def corrupt_empty(part: Path) -> None:
    part.write_bytes(b"")


def corrupt_wrong_schema(part: Path) -> None:
    pq.write_table(pa.table({"something": [1, 2, 3]}), part)


def corrupt_future_version(part: Path) -> None:
    table = pq.read_table(part)
    pq.write_table(table.replace_schema_metadata({b"gradprobe_schema": b"999"}), part)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("safety") / "run")


@pytest.mark.parametrize("corrupt", [corrupt_truncate, corrupt_garbage, corrupt_empty, corrupt_wrong_schema,
                                     corrupt_future_version])
def test_unreadable_parts_are_named_counted_and_reported(clean_run, tmp_path, corrupt):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    parts = sorted((out / "stats" / "rank0").glob("part-*.parquet"))
    assert len(parts) >= 3
    steps_before = len(open_run(out).steps())
    corrupt(parts[1])

    run = open_run(out)
    with pytest.warns(RuntimeWarning, match=r"unreadable part .*stats/rank0/" + parts[1].name):
        stats = run.stats("grad")
    assert len(stats) > 0  # the rest is still read
    assert list(run.unreadable) == [parts[1]]
    assert steps_before >= len(run.steps())

    shown = cli("show", str(out))
    assert shown.returncode == 0 and parts[1].name in shown.stderr and "Traceback" not in shown.stderr
    assert cli("show", "--strict", str(out)).returncode == 1
    checked = cli("check", "--strict", str(out))
    assert checked.returncode == 3 and parts[1].name in checked.stderr


def test_a_corrupt_meta_json_is_an_error_naming_the_file(clean_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    (out / "meta.json").write_text('{"status": "runn')
    with pytest.raises(RunCorruptError, match="meta.json"):
        open_run(out)
    shown = cli("show", str(out))
    assert shown.returncode == 2 and "meta.json" in shown.stderr and "Traceback" not in shown.stderr


def test_garbage_event_lines_are_counted(clean_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    with open(out / "events.jsonl", "a") as events:
        events.write("not json\n[1, 2]\n")
    run = open_run(out)
    assert run.events("start") and run.unreadable_event_lines == 2


def test_overwrite_refuses_a_directory_gradprobe_did_not_write(tmp_path):
    foreign = tmp_path / "experiment"
    foreign.mkdir()
    (foreign / "meta.json").write_text("{}")
    (foreign / "weights.bin").write_bytes(b"precious")
    model = torch.nn.Linear(2, 1)
    with pytest.raises(RunDirectoryError, match="did not write"):
        Probe(model, torch.optim.SGD(model.parameters(), lr=0.1), out_dir=foreign, exist="overwrite")
    assert (foreign / "weights.bin").read_bytes() == b"precious" and (foreign / "meta.json").read_text() == "{}"


def test_overwrite_removes_only_gradprobe_entries(tmp_path):
    out = record(tmp_path / "run", steps=2)
    (out / "notes.txt").write_text("mine")
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=out, exist="overwrite") as probe:
        model(torch.randn(2, 2)).sum().backward()
        opt.step()
        probe.step()
    assert (out / "notes.txt").read_text() == "mine"
    run = open_run(out)
    assert run.meta["model"]["type"] == "Linear" and len(run.steps()) == 1


def test_a_killed_run_reads_as_killed_and_a_live_one_as_running(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(HERE / "train_forever.py"), str(out)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert open_run(out).status == "running"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run = open_run(out)
    assert run.meta["status"] == "running" and run.status == "killed"
    assert "killed" in cli("show", str(out)).stdout


def test_a_closed_run_reads_as_completed(clean_run):
    assert open_run(clean_run).status == "completed"
