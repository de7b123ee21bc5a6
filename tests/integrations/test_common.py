"""What the adapters share: the report hook writes the run's report and turns its failure into a
warning (training is over by then); wrapped optimizers are unwrapped."""

from __future__ import annotations

import types

import pytest
import torch

import gradprobe
import gradprobe.report
from gradprobe.integrations import write_report
from gradprobe.integrations.common import unwrap_optimizer


def fake_report(monkeypatch, write) -> None:
    monkeypatch.setattr(gradprobe.report, "write_report", write)


def test_the_report_of_a_real_run_is_written(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        probe.step(loss=1.0)
    written = write_report(str(tmp_path / "run"))
    assert written == tmp_path / "run" / "report.html" and "plotly" in written.read_text()


def test_a_failing_report_is_a_warning(monkeypatch, tmp_path):
    def broken(run_dir):
        raise OSError("disk full")

    fake_report(monkeypatch, broken)
    with pytest.warns(RuntimeWarning, match="could not be written.*disk full"):
        assert write_report(tmp_path) is None


def test_wrapped_optimizers_are_unwrapped():
    inner = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    accelerated = types.SimpleNamespace(optimizer=types.SimpleNamespace(_optimizer=inner))
    assert unwrap_optimizer(accelerated) is inner
    assert unwrap_optimizer(inner) is inner
    with pytest.raises(TypeError, match="not a torch.optim.Optimizer"):
        unwrap_optimizer(types.SimpleNamespace())
