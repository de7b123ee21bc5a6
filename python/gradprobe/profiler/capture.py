"""The deep capture window: torch.profiler over a few steps, asked for by configuration
(ProfilerConfig.profile_steps) or by a rule's finding (the CaptureSteps action). It writes a
Chrome trace (open it in chrome://tracing or https://ui.perfetto.dev) and a top-operators table
(self CPU and device time) into the run directory's profiler/ folder:

    profiler/trace-rank0-steps10-15.json
    profiler/operators-rank0-steps10-15.parquet   (read all of them with top_operators(run_dir))
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..actions import Action, ActionContext
from ..rules import Finding

FOLDER = "profiler"
OPERATORS_SCHEMA = pa.schema([("start_step", pa.int64()), ("stop_step", pa.int64()), ("rank", pa.int32()),
                              ("operator", pa.string()), ("calls", pa.int64()), ("self_cpu_seconds", pa.float64()),
                              ("cpu_seconds", pa.float64()), ("self_device_seconds", pa.float64()),
                              ("device_seconds", pa.float64())])


class DeepCapture:
    """Runs on the training thread, at step ends: starts torch.profiler before the first step of
    a window and stops it after the last; `request(steps)` (any thread) asks for the next steps."""

    def __init__(self, run_dir: Path, rank: int, window: tuple[int, int] | None, top: int, cuda: bool,
                 event: Callable[[dict[str, Any]], None]) -> None:
        self.run_dir, self.rank, self.top, self.cuda = run_dir, rank, top, cuda
        self._event = event
        self._window = window
        self._requested: int | None = None
        self._lock = threading.Lock()
        self._profile: Any = None
        self._started_at = 0
        self.captures: list[tuple[int, int]] = []

    def request(self, steps: int) -> None:
        """Capture the next `steps` training steps (ignored while a capture runs)."""
        with self._lock:
            if self._profile is None and self._requested is None:
                self._requested = steps

    def before_first_step(self) -> None:
        if self._window is not None and self._window[0] == 0:
            self._start(0)

    def end_step(self, step: int, mode: str) -> None:
        """Step `step` of `mode` just ended."""
        if mode != "train":
            return
        if self._profile is not None:
            if self._window is not None and step + 1 >= self._window[1]:
                self._stop(step + 1)
            return
        if self._window is not None and step + 1 == self._window[0]:
            self._start(step + 1)
            return
        with self._lock:
            requested, self._requested = self._requested, None
        if requested:
            self._window = (step + 1, step + 1 + requested)
            self._start(step + 1)

    def _start(self, step: int) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        try:
            self._profile = torch.profiler.profile(activities=activities)
            self._profile.start()
            self._started_at = step
        except Exception as error:  # another profiler is running, ...: the training goes on
            self._profile = None
            self._window = None
            warnings.warn(f"gradprobe: the deep capture could not start: {error}", RuntimeWarning, stacklevel=3)
            self._event({"type": "deep_capture_failed", "step": step, "error": repr(error)})

    def _stop(self, stop: int) -> None:
        profile, self._profile, self._window = self._profile, None, None
        start = self._started_at
        try:
            profile.stop()
            folder = self.run_dir / FOLDER
            folder.mkdir(parents=True, exist_ok=True)
            name = f"rank{self.rank}-steps{start}-{stop}"
            trace = folder / f"trace-{name}.json"
            profile.export_chrome_trace(str(trace))
            table = operators_table(profile.key_averages(), start, stop, self.rank, self.top)
            pq.write_table(table, folder / f"operators-{name}.parquet")
        except Exception as error:
            warnings.warn(f"gradprobe: the deep capture of steps {start}-{stop - 1} failed: {error}", RuntimeWarning,
                          stacklevel=3)
            self._event({"type": "deep_capture_failed", "step": start, "error": repr(error)})
            return
        self.captures.append((start, stop))
        self._event({"type": "deep_capture", "start_step": start, "stop_step": stop,
                     "trace": str(trace.relative_to(self.run_dir)), "operators": table.num_rows})

    def close(self, last_step: int) -> None:
        """A capture still running at close ends with the last step."""
        if self._profile is not None:
            self._stop(last_step)


def operators_table(averages: Any, start: int, stop: int, rank: int, top: int) -> pa.Table:
    """The `top` operators by self device time, then self CPU time (torch reports microseconds)."""
    rows: list[tuple[Any, ...]] = []
    for avg in averages:
        self_device = float(getattr(avg, "self_device_time_total", 0.0) or 0.0)
        device = float(getattr(avg, "device_time_total", 0.0) or 0.0)
        rows.append((avg.key, int(avg.count), avg.self_cpu_time_total / 1e6, avg.cpu_time_total / 1e6,
                     self_device / 1e6, device / 1e6))
    rows.sort(key=lambda r: (r[4], r[2]), reverse=True)
    rows = rows[:top]
    columns: list[Any] = list(zip(*rows)) if rows else [() for _ in range(6)]
    n = len(rows)
    return pa.table([pa.array([start] * n, pa.int64()), pa.array([stop] * n, pa.int64()),
                     pa.array([rank] * n, pa.int32()), pa.array(columns[0], pa.string()),
                     pa.array(columns[1], pa.int64())] + [pa.array(c, pa.float64()) for c in columns[2:]],
                    schema=OPERATORS_SCHEMA)


def top_operators(run_dir: str | Path) -> pd.DataFrame:
    """Every deep capture's top operators of a run (empty when none was captured)."""
    parts = sorted((Path(run_dir) / FOLDER).glob("operators-*.parquet"))
    if not parts:
        return OPERATORS_SCHEMA.empty_table().to_pandas()
    frame: pd.DataFrame = pa.concat_tables([pq.read_table(p) for p in parts]).to_pandas()
    return frame


@dataclass
class CaptureSteps(Action):
    """An action: a finding starts a deep capture of the next `steps` training steps (once per
    `cooldown_seconds` per rule). The probe binds it to its profiler; unbound, it does nothing."""

    steps: int = 5
    inline: bool = field(default=True, init=False)  # only sets a flag the training thread reads
    _capture: DeepCapture | None = field(default=None, init=False, repr=False)

    def bind(self, capture: DeepCapture) -> None:
        self._capture = capture

    def describe(self) -> str:
        return f"CaptureSteps({self.steps} steps)"

    def run(self, finding: Finding, context: ActionContext) -> None:
        if self._capture is not None:
            self._capture.request(self.steps)
