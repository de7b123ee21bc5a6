"""The commands and the API as the README writes them, in fresh interpreters; the live view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import gradprobe
from gradprobe.follow import follow_run
from tests.probe.helpers import TinyMLP, train_steps

ROOT = Path(__file__).resolve().parents[2]


def gradprobe_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradprobe.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_report_command_writes_the_file_it_names(runs, tmp_path):
    done = gradprobe_cli("report", str(runs.nan), "-o", str(tmp_path / "nan.html"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {tmp_path / 'nan.html'}"
    assert "GP100" in (tmp_path / "nan.html").read_text()
    done = gradprobe_cli("report", str(runs.healthy), str(runs.nan))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {runs.healthy / 'report-compare.html'}"


def test_report_of_a_missing_run_is_one_clear_line(tmp_path):
    done = gradprobe_cli("report", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"gradprobe report: error: {tmp_path / 'nowhere'} is not a gradprobe run (no meta.json)"


def test_api_in_a_fresh_interpreter(runs, tmp_path):
    code = (f"import gradprobe\n"
            f"print(gradprobe.open_run({str(runs.nan)!r}).report({str(tmp_path / 'a.html')!r}))\n"
            f"print(gradprobe.report.write_report([{str(runs.healthy)!r}, {str(runs.nan)!r}], "
            f"{str(tmp_path / 'b.html')!r}))\n"
            f"print(gradprobe.report.report({str(runs.nan)!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "a.html"), str(tmp_path / "b.html"), str(runs.nan / "report.html")]


def test_live_run_report_and_follow_until_it_completes(tmp_path, capsys):
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = gradprobe.Probe(model, optimizer, out_dir=tmp_path / "live")
    try:
        train_steps(model, optimizer, probe, 5)
        probe.flush()
        html = gradprobe.open_run(tmp_path / "live").report().read_text()
        assert "running" in html and "so far" in html
        sleeps = []

        def sleep(seconds: float) -> None:  # the run ends while the view waits
            sleeps.append(seconds)
            train_steps(model, optimizer, probe, 3)
            probe.close()

        assert follow_run(tmp_path / "live", interval=0.5, sleep=sleep) == 0
    finally:
        probe.close()
    out = capsys.readouterr().out
    assert sleeps == [0.5]
    assert out.count("train steps") == 2 and "5 train steps" in out and "8 train steps" in out
    assert "run running: following" in out and out.rstrip().endswith("run completed: no longer following")


def test_follow_stops_on_ctrl_c(tmp_path, capsys):
    model = TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with gradprobe.Probe(model, optimizer, out_dir=tmp_path / "live") as probe:
        train_steps(model, optimizer, probe, 2)
        probe.flush()

        def interrupted(seconds: float) -> None:
            raise KeyboardInterrupt

        assert follow_run(tmp_path / "live", sleep=interrupted) == 0
    out = capsys.readouterr().out
    assert out.count("train steps") == 1 and out.rstrip().endswith("stopped following")


def test_show_follow_command_on_a_finished_run(runs):
    done = gradprobe_cli("show", str(runs.nan), "--follow", "--interval", "0.2")
    assert done.returncode == 0, done.stderr
    assert "run completed: no longer following" in done.stdout


def test_gradprobe_run_writes_the_report_and_prints_its_path(tmp_path):
    done = gradprobe_cli("run", "--out", str(tmp_path / "run"), "--", "python",
                         str(ROOT / "examples" / "train_mlp.py"), "--steps", "5")
    assert done.returncode == 0, done.stderr
    assert f"gradprobe: report: {tmp_path / 'run' / 'report.html'}" in done.stderr
    assert (tmp_path / "run" / "report.html").stat().st_size > 1_000_000
