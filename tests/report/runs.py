"""Real tiny runs for the report tests: healthy, with a planted NaN, with hostile names; and system
samples and step phases written through the store writer as the profiler writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

import gradprobe
from gradprobe.store import RunWriter, StoreConfig
from gradprobe.store.schema import PHASE_COLUMNS, SCHEMAS
from tests.probe.helpers import TinyMLP, batch

HOSTILE = "<script>alert('module')</script>"
HOSTILE_METRIC = '<img src=x onerror="alert(2)">&amp;'
SLOW_STEP = 17  # the planted step outlier: its data wait is 20x the others'


def train(out: Path, steps: int = 30, nan_at: int | None = None, model: torch.nn.Module | None = None,
          metric: str = "accuracy") -> Path:
    """A TinyMLP (or `model`) trained with SGD under the full preset, two named losses, an eval every
    10 steps; with nan_at, the input batch of that step holds a NaN (NonFinite fires there)."""
    torch.manual_seed(0)
    model = model or TinyMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    # The profiler is off: the system and phase tables of these runs are planted (conftest.py).
    config = {"preset": "full", "profiler": {"system_interval": None, "phases": False, "loader": False}}
    with gradprobe.Probe(model, optimizer, out_dir=out, config=config) as probe:
        for step in range(steps):
            x, y = batch(step)
            if step == nan_at:
                x[0, 0] = float("nan")
            logits = model(x)
            ce = torch.nn.functional.cross_entropy(logits, y)
            aux = 1e-3 * logits.pow(2).mean()
            (ce + aux).backward()
            optimizer.step()
            optimizer.zero_grad()
            probe.step(loss=ce + aux, losses={"ce": ce, "aux": aux})
            if step % 10 == 9:
                with torch.no_grad():
                    x, y = batch(1000 + step)
                    logits = model(x)
                    accuracy = (logits.argmax(1) == y).float().mean()
                    probe.step(loss=torch.nn.functional.cross_entropy(logits, y), metrics={metric: accuracy},
                               mode="eval")
    return out


class HostileNames(torch.nn.Module):
    """A model whose module names are HTML: the report must show them as text."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module(HOSTILE, torch.nn.Linear(12, 16))
        self.act = torch.nn.ReLU()
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(getattr(self, HOSTILE)(x)))


def add_profile(out: Path, steps: int = 30, nodes: tuple[str, ...] = ("node-a",)) -> dict[str, np.ndarray]:
    """System samples (host CPU and memory, two cores, one GPU) and step phases, written through the
    store writer as the profiler does; returns the planted host CPU values per node."""
    rng = np.random.default_rng(1)
    writer = RunWriter(out, 0, StoreConfig())
    start = float(gradprobe.open_run(out).meta["start_time"])
    planted = {}
    try:
        for node in nodes:
            times = start + np.arange(40, dtype=np.float64) * 0.5
            cpu = rng.uniform(20, 90, len(times))
            planted[node] = cpu
            columns: dict[str, list[object]] = {"time": [], "node": [], "device": [], "metric": [], "value": []}
            for device, metric, values in (("host", "cpu_percent", cpu), ("host", "memory_used_bytes", 1e9 + times),
                                           ("cpu0", "cpu_percent", cpu / 2), ("cpu1", "cpu_percent", cpu / 3),
                                           ("gpu0", "gpu_utilization_percent", 100 - cpu)):
                columns["time"] += list(times)
                columns["node"] += [node] * len(times)
                columns["device"] += [device] * len(times)
                columns["metric"] += [metric] * len(times)
                columns["value"] += list(values)
            writer.write("system", pa.RecordBatch.from_pydict(columns, schema=SCHEMAS["system"]))
        phases = {c: rng.uniform(0.001, 0.002, steps) for c in PHASE_COLUMNS if c != "total"}
        phases["data_wait"][SLOW_STEP] = 0.04
        phases["total"] = sum(phases.values())
        writer.write("phases", pa.RecordBatch.from_pydict(
            {"step": np.arange(steps), "mode": ["train"] * steps, "node": [nodes[0]] * steps,
             "time": start + np.arange(steps) * 0.01, **phases}, schema=SCHEMAS["phases"]))
    finally:
        writer.close()
    return planted


# -- degenerate runs: what a report must survive -------------------------------------------------

# Every built-in collection's include pattern replaced by one that matches no name.
SELECTS_NOTHING = {"collections": {name: {"include": ["^selects nothing$"]}
                                   for name in ("gradients", "weights", "biases", "updates", "activations")}}


class NoParameters(torch.nn.Module):
    """A model that owns no parameter: its one trainable tensor is a plain attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.ones(3, requires_grad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] * self.scale


def dead_relu_mlp() -> TinyMLP:
    """Every ReLU output of fc1 is 0 (bias -10): the gradients of fc1, fc2 and head's weight are all zero."""
    model = TinyMLP()
    torch.nn.init.constant_(model.fc1.bias, -10.0)
    return model


def nan_mlp() -> TinyMLP:
    """Every weight NaN from the start: every statistic of every step is NaN."""
    model = TinyMLP()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    return model


def train_degenerate(out: Path, model: torch.nn.Module, steps: int, train_steps: bool = True,
                     config: str | dict = "default", parameters: list[torch.Tensor] | None = None) -> Path:
    """`steps` steps of SGD on `model` (none when not train_steps), each followed by an evaluation."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(parameters if parameters is not None else model.parameters(), lr=0.05)
    with gradprobe.Probe(model, optimizer, out_dir=out, config=config) as probe:
        for step in range(steps):
            x, y = batch(step)
            if train_steps:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                probe.step(loss=loss)
            with torch.no_grad():
                loss = torch.nn.functional.cross_entropy(model(x), y)
            probe.step(loss=loss, metrics={"accuracy": 0.5}, mode="eval")
    return out
