"""The ranks' exchange for LoadBalancing: every `every` training steps, each rank sends its mean
seconds per phase over those steps and its GPUs' utilisation histograms; every rank gets all of
them as one RanksRecord.

A CPU collective (all_gather_object) on the training thread, at the end of a step: under gloo on
the default group, under NCCL on a gloo group made at construction (so no device synchronisation).
Every rank must build its probe and call probe.step() alike, as StopAgreement already requires.
Its time counts as gradprobe's (the fast ranks wait there for the slow one).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch.distributed as dist

from ..records import PhaseRecord, RanksRecord
from ..rules.steps import TIMED_PHASES

UTIL_BINS = 10  # equal bins over 0-100 %


class RankExchange:
    def __init__(self, rank: int, every: int) -> None:
        self.rank, self.every = rank, every
        self._group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        self._lock = threading.Lock()
        self._sums = dict.fromkeys(TIMED_PHASES, 0.0)
        self._counts = dict.fromkeys(TIMED_PHASES, 0)
        self._util: dict[str, np.ndarray] = {}

    def add_phases(self, record: PhaseRecord) -> None:
        with self._lock:
            for phase in TIMED_PHASES:
                value = record.phases.get(phase, math.nan)
                if not math.isnan(value):
                    self._sums[phase] += value
                    self._counts[phase] += 1

    def add_utilization(self, device: str, percent: float) -> None:
        """From the sampler thread: one GPU utilisation sample."""
        with self._lock:
            hist = self._util.setdefault(device, np.zeros(UTIL_BINS, np.int64))
            hist[min(UTIL_BINS - 1, max(0, int(percent * UTIL_BINS / 100)))] += 1

    def due(self, step: int, mode: str) -> bool:
        return mode == "train" and (step + 1) % self.every == 0

    def exchange(self, step: int, mode: str) -> RanksRecord:
        with self._lock:
            mine: dict[str, Any] = {
                "rank": self.rank,
                "phases": {p: self._sums[p] / self._counts[p] if self._counts[p] else math.nan for p in TIMED_PHASES},
                "util": {f"rank{self.rank}/{device}": hist.tolist() for device, hist in self._util.items()},
            }
            self._sums = dict.fromkeys(TIMED_PHASES, 0.0)
            self._counts = dict.fromkeys(TIMED_PHASES, 0)
            self._util = {}
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine, group=self._group)
        utilization: dict[str, list[int]] = {}
        for summary in gathered:
            utilization.update(summary["util"])
        return RanksRecord(step, mode, {s["rank"]: s["phases"] for s in gathered}, utilization)
