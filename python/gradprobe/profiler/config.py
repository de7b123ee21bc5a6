"""The profiler's configuration: one frozen dataclass, part of ProbeConfig (key `profiler`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..store.config import ConfigError, check_fields

MIN_INTERVAL, MAX_INTERVAL = 0.1, 60.0


@dataclass(frozen=True)
class ProfilerConfig:
    """system_interval: seconds between system samples (0.1-60; None: no sampler).
    gpu: sample the GPUs the model is on through NVML (nvidia-ml-py).
    phases: time each step's phases (data wait, forward, backward, optimizer, gradprobe).
    loader: time DataLoader iteration while the probe is active (patches torch's loader iterators
    and restores them at close); other iterables: gradprobe.profiler.timed(iterable, probe).
    profile_steps: (start, stop): torch.profiler over training steps start..stop-1 (a Chrome trace
    and a top-operators table in the run directory's profiler/ folder).
    top_operators: rows kept in that table.
    exchange_every: training steps between the ranks' exchanges of their summaries (LoadBalancing).
    """

    system_interval: float | None = 0.5
    gpu: bool = True
    phases: bool = True
    loader: bool = True
    profile_steps: tuple[int, int] | None = None
    top_operators: int = 50
    exchange_every: int = 50

    def __post_init__(self) -> None:
        check_fields(self, "profiler", {"top_operators": 1, "exchange_every": 1})
        if self.system_interval is not None and not MIN_INTERVAL <= self.system_interval <= MAX_INTERVAL:
            raise ConfigError(f"profiler.system_interval: {self.system_interval!r} is out of range, expected "
                              f"{MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds (or null for no sampler)")
        if self.profile_steps is not None:
            start, stop = self.profile_steps
            if not 0 <= start < stop:
                raise ConfigError(f"profiler.profile_steps: {self.profile_steps!r} is not a (start, stop) pair "
                                  "with 0 <= start < stop")

    @classmethod
    def for_preset(cls, preset: str) -> ProfilerConfig:
        """minimal: step phases only; default and full: the system sampler too, every 500 ms."""
        return cls(system_interval=None) if preset == "minimal" else cls()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: ProfilerConfig | None = None) -> ProfilerConfig:
        """Keys as the fields; profile_steps as a two-item list. Unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"profiler: {data!r} is a {type(data).__name__}, expected a mapping")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"profiler: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        values = dict(data)
        steps = values.get("profile_steps")
        if isinstance(steps, list):
            values["profile_steps"] = tuple(steps)
        return dataclasses.replace(base or cls(), **values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["profile_steps"] = list(self.profile_steps) if self.profile_steps is not None else None
        return data
