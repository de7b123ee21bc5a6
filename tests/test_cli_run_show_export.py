"""gradprobe run (zero-code mode), show and export tensorboard on real runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gradprobe import open_run

ROOT = Path(__file__).resolve().parents[1]


def gradprobe_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradprobe.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    done = gradprobe_cli("run", "--out", str(out), "--", "python", str(ROOT / "examples" / "train_mlp.py"),
                         "--steps", "25")
    assert done.returncode == 0, done.stderr
    assert "step 20 loss" in done.stdout  # the script ran as usual
    return out


def test_run_records_an_unmodified_script(recorded_run):
    run = open_run(recorded_run)
    assert run.meta["status"] == "completed"
    assert list(run.steps()) == list(range(25))
    assert run.tensors("grad") == ["0.weight", "0.bias", "2.weight", "2.bias"]
    losses = run.scalars(["loss"]).value.to_numpy()
    assert len(losses) == 25 and losses[-1] < losses[0]


def test_run_failing_script_closes_the_run_as_failed(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("import torch\nm = torch.nn.Linear(2, 1)\no = torch.optim.SGD(m.parameters(), lr=0.1)\n"
                      "for i in range(3):\n    m(torch.randn(4, 2)).sum().backward(); o.step(); o.zero_grad()\n"
                      "raise RuntimeError('boom')\n")
    done = gradprobe_cli("run", "--out", str(tmp_path / "run"), "--", "python", str(script))
    assert done.returncode != 0 and "boom" in done.stderr
    run = open_run(tmp_path / "run")
    assert run.meta["status"] == "failed" and len(run.steps()) == 3


def test_show_prints_tables(recorded_run):
    done = gradprobe_cli("show", str(recorded_run))
    assert done.returncode == 0, done.stderr
    assert "25 train steps" in done.stdout and "grad at step 24" in done.stdout and "loss" in done.stdout


def test_export_tensorboard_writes_norms_losses_and_histograms(recorded_run, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    done = gradprobe_cli("export", "tensorboard", str(recorded_run), "--out", str(tmp_path / "tb"))
    assert done.returncode == 0, done.stderr
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert "train/loss" in tags["scalars"] and "grad_norm/0.weight" in tags["scalars"]
    assert len(events.Scalars("train/loss")) == 25
    assert "grad_abs_exponent/0.weight" in tags["histograms"]


def test_run_a_module_with_dash_m(tmp_path):
    (tmp_path / "trainmod.py").write_text(
        "import torch\nm = torch.nn.Linear(3, 1)\no = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "for i in range(4):\n    l = m(torch.randn(5, 3)).pow(2).mean(); l.backward(); o.step(); o.zero_grad()\n")
    done = subprocess.run([sys.executable, "-m", "gradprobe.cli", "run", "--out", str(tmp_path / "run"), "--",
                           "python", "-m", "trainmod"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert list(open_run(tmp_path / "run").steps()) == [0, 1, 2, 3]
