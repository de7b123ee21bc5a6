"""Tiny CPU trainings with the profiler on, and the profiler rules at windows short enough for tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradprobe import Probe, open_run
from gradprobe.rules import Finding, Rule
from gradprobe.rules.steps import Dataloader, LoadBalancing, MaxInitializationTime, StepOutlier
from gradprobe.rules.system_usage import (
    BatchSize,
    CPUBottleneck,
    GPUMemoryIncrease,
    IOBottleneck,
    LowGPUUtilization,
    OverallSystemUsage,
)

INTERVAL = 0.1  # seconds between system samples in the tests


def profiler_rules() -> list[Rule]:
    """Every profiler rule, with windows of about a second, CPUBottleneck judging CPU-only runs too,
    Dataloader at a 50 % wait share (a busy machine stretches a tiny step's collation too).
    MaxInitializationTime keeps a threshold no test process reaches: a pytest process is old by
    the time most tests run."""
    return [CPUBottleneck(window=10, patience=0, cpu_only=True), IOBottleneck(window=10, patience=0),
            LowGPUUtilization(window=10, patience=0), BatchSize(window=10, patience=0),
            GPUMemoryIncrease(window=5, patience=5, increase=0.5),
            StepOutlier(n_outliers=3, min_excess_seconds=0.1, patience=5), Dataloader(window=20, patience=2, wait_threshold=0.5),
            MaxInitializationTime(threshold=1e9), LoadBalancing(), OverallSystemUsage()]


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))


def train(out: Path, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, model: torch.nn.Module | None = None,
          rules: list[Rule] | None = None, each_step: Callable[[int], None] | None = None,
          profiler: dict[str, Any] | None = None, actions: Iterable[Any] = ()) -> tuple[list[Finding], Any]:
    """Trains on `batches` (one optimizer step each) under a probe recording only gradients."""
    model = model or small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    config = {"preset": "minimal", "profiler": {"system_interval": INTERVAL, **(profiler or {})}}
    with Probe(model, optimizer, out_dir=out, config=config, rules=profiler_rules() if rules is None else rules,
               actions=list(actions)) as probe:
        for step, (x, y) in enumerate(batches):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if each_step is not None:
                each_step(step)
            probe.step(loss=loss)
    return probe.findings, open_run(out)


def codes(findings: Iterable[Finding]) -> set[str]:
    return {f.rule for f in findings}


def host_saturated(run: Any, threshold: float = 90.0) -> bool:
    """Whether the recorded samples themselves show the host's cores saturated for a large share
    of the run (other work on a shared machine): CPUBottleneck is then right to fire."""
    cpu = run.system(["cpu_util_pct"])
    host = cpu[cpu["device"] == "host"]["value"].to_numpy()
    return bool(len(host)) and float(np.mean(host > threshold)) > 0.3


def allowed_noise(run: Any) -> set[str]:
    return {"CPUBottleneck"} if host_saturated(run) else set()
