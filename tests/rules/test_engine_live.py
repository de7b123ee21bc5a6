"""The engine's clock (StalledTraining), action cooldowns, and the rules/check commands."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from gradprobe import Probe, open_run
from gradprobe.actions import Log
from gradprobe.rules.system import StalledTraining
from gradprobe.rules.weights import AllZero


def test_stalled_training_is_reported_by_the_clock_thread(tmp_path):
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[StalledTraining(threshold=0.3)]) as probe:
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
        probe.step()
        deadline = time.time() + 10
        while time.time() < deadline and not probe.findings:
            time.sleep(0.05)  # the loop "hangs" here
        assert probe.findings and probe.findings[0].code == "GP170"
    assert open_run(tmp_path / "run").events("finding")[0]["code"] == "GP170"


def test_action_cooldown_per_rule_code(tmp_path, caplog):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    torch.nn.init.zeros_(model[0].weight)
    torch.nn.init.zeros_(model[1].weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    rule = AllZero()
    with caplog.at_level("ERROR", logger="gradprobe"):
        with Probe(model, opt, out_dir=tmp_path / "run", rules=[rule], actions=[Log(cooldown_seconds=3600)]) as probe:
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
            rule._reported.clear()  # the same finding again on the next step: within the cooldown
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    run = open_run(tmp_path / "run")
    assert len(run.events("finding")) == 2  # every finding is recorded...
    assert len([r for r in caplog.records if "GP111" in r.getMessage()]) == 1  # ...the action ran once
    assert run.events("action_skipped")[0]["reason"] == "cooldown"


def test_rules_and_check_commands(tmp_path):
    listing = subprocess.run([sys.executable, "-m", "gradprobe.cli", "rules"], capture_output=True, text=True,
                             check=True).stdout
    assert "GP101 * VanishingGradient [error]" in listing and "parameters: peer_ratio=1e-05" in listing
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    torch.nn.init.zeros_(model[0].weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Probe(model, opt, out_dir=tmp_path / "run", rules=[]) as probe:  # recorded without rules
        for _ in range(3):
            model(torch.randn(2, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
            probe.step()
    # A zero-initialised matrix is a warning (it can be intended), so fail on warnings here.
    failing = subprocess.run([sys.executable, "-m", "gradprobe.cli", "check", str(tmp_path / "run"),
                              "--fail-on", "warning"], capture_output=True, text=True)
    assert failing.returncode == 1 and "GP111" in failing.stdout and "0.weight" in failing.stdout
    lenient = subprocess.run([sys.executable, "-m", "gradprobe.cli", "check", str(tmp_path / "run"),
                              "--rules", "GP120", "--fail-on", "critical"], capture_output=True, text=True)
    assert lenient.returncode == 0
