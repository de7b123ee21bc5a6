"""What the adapters share: the report hook calls gradprobe.report.write_report when it exists and
turns its failure into a warning (training is over by then); wrapped optimizers are unwrapped."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
import torch

from gradprobe.integrations import write_report
from gradprobe.integrations.common import REPORT_MODULE, unwrap_optimizer


def fake_report(monkeypatch, write) -> None:
    module = types.ModuleType(REPORT_MODULE)
    module.__spec__ = importlib.machinery.ModuleSpec(REPORT_MODULE, None)
    module.write_report = write
    monkeypatch.setitem(sys.modules, REPORT_MODULE, module)


def test_the_report_is_written_through_gradprobe_report(monkeypatch, tmp_path):
    calls = []
    fake_report(monkeypatch, lambda run_dir: calls.append(run_dir) or run_dir / "report.html")
    assert write_report(str(tmp_path)) == tmp_path / "report.html"
    assert calls == [Path(tmp_path)]


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
