"""The run directory's lifecycle for one probe: created or appended to, its meta.json, events, and
its closing status. Rank 0 owns meta.json; every rank writes its own parts and events.

Appending starts a new session: step numbers continue after the last step recorded per mode, and
meta.json's "sessions" lists each session's start time, first step per mode and config.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..store import RunWriter, StoreConfig
from ..store.ownership import remove_gradprobe_entries
from ..store.reader import open_run
from ..store.schema import META_FILE
from ..store.writer import prepare_run_dir, update_meta, write_json_atomic
from ..thread_cpu import ThreadCpu
from .config import MODES
from .meta import ParameterGroups, build_meta, parameter_records


class RunSession:
    def __init__(self, out_dir: Path, exist: str, store: StoreConfig, cpu: ThreadCpu | None = None) -> None:
        self.out_dir = out_dir
        self.rank, self.world_size = distributed_rank()
        self._fresh = not (out_dir / META_FILE).exists()
        prepare_run_dir(out_dir, exist if self.rank == 0 else "append")
        self._fresh = self._fresh or exist == "overwrite"
        # Before the writer exists: its own parts must not count.
        self.first_steps = dict.fromkeys(MODES, 0) if self._fresh else next_steps(out_dir)
        self.writer = RunWriter(out_dir, self.rank, store, cpu)
        self._restore_on_abandon: dict[str, Any] = {}  # meta.json fields an abandoned append puts back

    def write_meta(self, model: torch.nn.Module, groups: ParameterGroups, config: Mapping[str, Any],
                   optimizers: Sequence[torch.optim.Optimizer] = ()) -> None:
        if self.rank != 0:
            return
        meta_path = self.out_dir / META_FILE
        meta = build_meta(model, groups, dict(config), self.rank, self.world_size, optimizers)
        session = {"start_time": meta["start_time"], "first_step": dict(self.first_steps), "config": meta["config"]}
        if not self._fresh and meta_path.exists():  # appending: keep the first session's start
            try:
                previous = json.loads(meta_path.read_text())
                sessions = list(previous.get("sessions") or [])
            except (OSError, ValueError, AttributeError):
                previous, sessions = {}, []
            self._restore_on_abandon = {key: previous.get(key) for key in ("status", "config", "sessions")}
            update_meta(self.out_dir, status="running", config=meta["config"], sessions=[*sessions, session])
        else:
            write_json_atomic(meta_path, {**meta, "sessions": [session]})

    def event(self, record: Mapping[str, Any]) -> None:
        self.writer.event(record)

    def note(self, key: str, value: Any) -> None:
        """A fact about how the run was recorded, kept in meta.json (rank 0)."""
        if self.rank == 0:
            update_meta(self.out_dir, **{key: value})

    def model_changed(self, groups: ParameterGroups, step: int) -> None:
        self.event({"type": "model_changed", "step": step, "parameters": len(groups)})
        if self.rank == 0:
            update_meta(self.out_dir, parameters=parameter_records(groups))

    def close(self, status: str, steps: Mapping[str, int], error: BaseException | None,
              dropped: Mapping[str, int], timeout: float) -> None:
        self.event({"type": "close", "status": status, "steps": dict(steps),
                    **({"error": repr(error)} if error is not None else {})})
        if dropped:
            self.event({"type": "dropped", "items": dict(dropped), "reason": "consumer queue full"})
        finished = self.writer.close(timeout)
        if not finished:
            self.event({"type": "writer_timeout", "timeout_seconds": timeout,
                        "reason": "the writer thread did not finish in time; rows still queued are lost"})
        if self.writer.truncated:
            self.event({"type": "truncated", "rows_lost": self.writer.rows_lost})
        if self.rank == 0:
            update_meta(self.out_dir, status=status, end_time=time.time(), steps=dict(steps),
                        truncated=self.writer.truncated, rows_written=self.writer.rows_written,
                        dropped=dict(dropped))

    def abandon(self, error: BaseException, timeout: float) -> None:
        """A failed construction: stops the writer and releases its lock; a directory this session
        created is emptied of what gradprobe wrote, so that a retry into it works."""
        self.writer.close(timeout)
        if self._fresh and self.rank == 0:
            try:
                remove_gradprobe_entries(self.out_dir)
            except OSError:
                pass
        else:
            self.event({"type": "start_failed", "error": repr(error)})
            if self._restore_on_abandon and self.rank == 0:
                update_meta(self.out_dir, **self._restore_on_abandon)


def next_steps(run_dir: Path) -> dict[str, int]:
    """Per mode, one past the last step the run recorded (its parts, or meta.json's closing counts)."""
    steps = dict.fromkeys(MODES, 0)
    run = open_run(run_dir)
    recorded = run.meta.get("steps")
    if isinstance(recorded, Mapping):
        for mode in MODES:
            value = recorded.get(mode)
            if isinstance(value, int) and not isinstance(value, bool):
                steps[mode] = max(steps[mode], value)
    for table in ("stats", "scalars"):
        for part in run.parts(table):
            try:
                columns = pq.read_table(part, columns=["step", "mode"])
            except (OSError, ValueError, KeyError, pa.ArrowException):
                continue  # the reader names unreadable parts; here they only cannot raise the floor
            for mode, last in _last_per_mode(columns).items():
                if mode in steps:
                    steps[mode] = max(steps[mode], last + 1)
    return steps


def _last_per_mode(columns: pa.Table) -> dict[str, int]:
    if columns.num_rows == 0:
        return {}
    grouped = columns.group_by("mode").aggregate([("step", "max")])
    return dict(zip(grouped["mode"].to_pylist(), grouped["step_max"].to_pylist()))


def distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
