"""What a user sees and keeps, as a user runs it (a script in a fresh interpreter): findings said on
stderr as they fire, repeats folded, a summary at the end, silence on request; a probe never closed is
closed at exit with every step; SIGTERM and SIGINT end the script as they would without gradprobe
(same exit status), with the steps recorded, the status "interrupted" and the report written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradprobe import open_run

ROOT = Path(__file__).resolve().parents[2]

TRAIN = """
import sys, time, torch, gradprobe
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
probe = gradprobe.Probe(model, opt, out_dir=sys.argv[1], {probe_args})
for step in range({steps}):
    x = torch.randn(16, 4)
    if {nan_from} <= step:
        x[0, 0] = float("nan")  # a broken input from this step on
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    probe.step(loss=loss)
    if step == {ready_at}:
        print("READY", flush=True)
    time.sleep({sleep})
{ending}
"""


def script(tmp_path: Path, steps: int = 12, nan_from: int = 10**9, probe_args: str = "", ending: str = "probe.close()",
           ready_at: int = -1, sleep: float = 0.0) -> Path:
    path = tmp_path / "train.py"
    path.write_text(TRAIN.format(steps=steps, nan_from=nan_from, probe_args=probe_args, ending=ending,
                                 ready_at=ready_at, sleep=sleep))
    return path


def run(path: Path, out: Path, *, zero_code: bool = False) -> subprocess.CompletedProcess:
    command = ([sys.executable, "-m", "gradprobe.cli", "run", "--out", str(out), "--", "python", str(path)]
               if zero_code else [sys.executable, str(path), str(out)])
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=str(ROOT))


def finding_lines(stderr: str, code: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gradprobe ") and f"[{code} " in line]


def test_a_finding_is_said_once_as_it_fires_and_summed_up_at_the_end(tmp_path):
    done = run(script(tmp_path, nan_from=5), tmp_path / "run")
    assert done.returncode == 0, done.stderr
    said = finding_lines(done.stderr, "GP100")
    assert said and said[0].startswith("gradprobe critical [GP100 NonFinite] step 5 (train)"), done.stderr
    assert len({line.split(" on ")[-1].split(":")[0] for line in said}) == len(said)  # each rule and tensor once
    summary = [line for line in done.stderr.splitlines() if line.startswith("gradprobe: ") and "findings (" in line]
    assert summary and "critical" in summary[0] and str(tmp_path / "run") in summary[0]
    assert "more times, last at step" in done.stderr  # the NaN kept firing: folded, counted
    assert open_run(tmp_path / "run").meta["status"] == "completed"


def without_probe(path: Path) -> Path:
    """The same script with no gradprobe code in it (for `gradprobe run`)."""
    path.write_text(path.read_text().replace("probe = gradprobe.Probe(model, opt, out_dir=sys.argv[1], )\n", "")
                    .replace("    probe.step(loss=loss)\n", "").replace("probe.close()", ""))
    return path


def test_zero_code_mode_says_findings_too(tmp_path):
    done = run(without_probe(script(tmp_path, nan_from=5)), tmp_path / "run", zero_code=True)
    assert done.returncode == 0, done.stderr
    assert finding_lines(done.stderr, "GP100"), done.stderr
    assert any("findings (" in line for line in done.stderr.splitlines())


def test_an_empty_action_list_keeps_findings_in_events_only(tmp_path):
    done = run(script(tmp_path, nan_from=5, probe_args="actions=[]"), tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("gradprobe")], done.stderr
    assert open_run(tmp_path / "run").events("finding")  # recorded all the same


def test_a_healthy_run_says_nothing_but_its_end(tmp_path):
    done = run(script(tmp_path), tmp_path / "run")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("gradprobe")]
    assert lines == [f"gradprobe: no findings at warning or above; run: {tmp_path / 'run'}"], done.stderr


def test_a_probe_never_closed_is_closed_at_exit_with_every_step(tmp_path):
    done = run(script(tmp_path, steps=40, ending=""), tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert "was never closed" in done.stderr and "probe.close()" in done.stderr
    run_ = open_run(tmp_path / "run")
    assert run_.meta["status"] == "not-closed"
    assert len(run_.steps()) == 40
    assert (tmp_path / "run" / "report.html").exists()


def plain_exit_status(tmp_path: Path, signum: int) -> int:
    """How the same script ends by that signal without gradprobe (the status to keep)."""
    path = tmp_path / "bare.py"
    path.write_text("import time\nprint('READY', flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "READY"
    child.send_signal(signum)
    return child.wait(60)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("zero_code", [False, True], ids=["api", "gradprobe run"])
def test_a_signal_ends_the_script_as_without_gradprobe_and_keeps_the_run(tmp_path, signum, zero_code):
    path = script(tmp_path, steps=100000, ready_at=6, sleep=0.02)
    if zero_code:
        without_probe(path)
        command = [sys.executable, "-m", "gradprobe.cli", "run", "--out", str(tmp_path / "run"), "--", "python",
                   str(path)]
    else:
        command = [sys.executable, str(path), str(tmp_path / "run")]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while child.stdout.readline().strip() != "READY":
        assert time.monotonic() < deadline and child.poll() is None, child.stderr.read()
    child.send_signal(signum)
    status = child.wait(120)
    stderr = child.stderr.read()
    assert status == plain_exit_status(tmp_path, signum), stderr
    run_ = open_run(tmp_path / "run")
    assert run_.meta["status"] == "interrupted", stderr
    assert len(run_.steps()) >= 7
    assert (tmp_path / "run" / "report.html").exists(), stderr
