"""Every example runs on the CPU and leaves a readable run (short runs: the examples' defaults take
longer). The single-process ones run in this interpreter (a fresh one would spend half a minute
importing transformers and Lightning again); the torchrun one launches two processes."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import gradprobe

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("script", ["train_hf_trainer.py", "train_lightning.py", "train_accelerate.py"])
def test_single_process_example_runs(tmp_path, monkeypatch, script):
    pytest.importorskip("transformers")
    pytest.importorskip("lightning" if "lightning" in script else "accelerate")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, "--out", str(tmp_path / "run"), "--steps", "4"])
    try:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    finally:
        reset_accelerate_state()
    run = gradprobe.open_run(tmp_path / "run")
    assert run.meta["status"] == "completed"
    assert sorted(run.stats("grad")["step"].unique()) == [0, 1, 2, 3]


def reset_accelerate_state() -> None:
    """accelerate keeps process-wide singletons; the next test builds its own."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_torchrun_example_writes_a_partition_per_rank(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(EXAMPLES / "train_torchrun.py"), "--out", str(tmp_path / "run"), "--steps", "4"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "statistics replicated across 2 ranks" in done.stdout
    run = gradprobe.open_run(tmp_path / "run")
    grads = run.stats("grad")
    assert sorted(grads["rank"].unique()) == [0, 1]
    assert sorted(grads["step"].unique()) == [0, 1, 2, 3]
