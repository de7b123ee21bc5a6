"""The run directory's lifecycle for one probe: created or appended to, its meta.json, events, and
its closing status. Rank 0 owns meta.json; every rank writes its own parts and events."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..store import RunWriter, StoreConfig
from ..store.schema import META_FILE
from ..store.writer import prepare_run_dir, update_meta, write_json_atomic
from .meta import ParameterGroups, build_meta, parameter_records


class RunSession:
    def __init__(self, out_dir: Path, exist: str, store: StoreConfig) -> None:
        self.out_dir = out_dir
        self.rank, self.world_size = distributed_rank()
        prepare_run_dir(out_dir, exist if self.rank == 0 else "append")
        self.writer = RunWriter(out_dir, self.rank, store)

    def write_meta(self, model: torch.nn.Module, groups: ParameterGroups, config: Mapping[str, Any]) -> None:
        if self.rank != 0:
            return
        meta_path = self.out_dir / META_FILE
        meta = build_meta(model, groups, dict(config), self.rank, self.world_size)
        if meta_path.exists():  # appending: keep the first session's start
            update_meta(self.out_dir, status="running", config=meta["config"])
        else:
            write_json_atomic(meta_path, meta)

    def event(self, record: Mapping[str, Any]) -> None:
        self.writer.event(record)

    def model_changed(self, groups: ParameterGroups, step: int) -> None:
        self.event({"type": "model_changed", "step": step, "parameters": len(groups)})
        if self.rank == 0:
            update_meta(self.out_dir, parameters=parameter_records(groups))

    def close(self, status: str, steps: Mapping[str, int], error: BaseException | None,
              dropped: Mapping[str, int]) -> None:
        self.event({"type": "close", "status": status, "steps": dict(steps),
                    **({"error": repr(error)} if error is not None else {})})
        if dropped:
            self.event({"type": "dropped", "items": dict(dropped), "reason": "consumer queue full"})
        self.writer.close()
        if self.writer.truncated:
            self.event({"type": "truncated", "rows_lost": self.writer.rows_lost})
        if self.rank == 0:
            update_meta(self.out_dir, status=status, end_time=time.time(), steps=dict(steps),
                        truncated=self.writer.truncated, rows_written=self.writer.rows_written,
                        dropped=dict(dropped))


def distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
