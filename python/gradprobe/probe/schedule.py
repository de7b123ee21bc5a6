"""When a collection is due: every N steps, explicit steps, ranges, and a dense start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..store.config import check_fields


@dataclass(frozen=True)
class Schedule:
    """A step is due when any rule matches.

    every: every N steps (0 = never by this rule); offset shifts it (step % every == offset).
    steps: explicit step numbers. ranges: inclusive (start, stop) pairs.
    dense_until / dense_every: a dense start, e.g. every step below 50 then `every`.
    """

    every: int = 1
    offset: int = 0
    steps: tuple[int, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()
    dense_until: int = 0
    dense_every: int = 1

    def __post_init__(self) -> None:
        check_fields(self, "schedule")
        if self.every < 0 or self.dense_every < 1 or self.dense_until < 0:
            raise ValueError(f"invalid schedule {self}: every >= 0, dense_every >= 1, dense_until >= 0")
        for start, stop in self.ranges:
            if stop < start:
                raise ValueError(f"invalid schedule range ({start}, {stop}): stop < start")

    def due(self, step: int) -> bool:
        if step < self.dense_until and step % self.dense_every == 0:
            return True
        if self.every and step % self.every == self.offset % self.every:
            return True
        if step in self.steps:
            return True
        return any(start <= step <= stop for start, stop in self.ranges)

    @classmethod
    def never(cls) -> Schedule:
        return cls(every=0)

    @classmethod
    def from_value(cls, value: Any) -> Schedule:
        """From a config value: an int (every N), a list of steps, or a mapping of the fields."""
        if isinstance(value, Schedule):
            return value
        if isinstance(value, bool):
            raise ValueError("schedule: expected an int, a list of steps or a mapping, got a bool")
        if isinstance(value, int):
            return cls(every=value)
        if isinstance(value, (list, tuple)):
            return cls(every=0, steps=tuple(value))
        if isinstance(value, Mapping):
            known = {"every", "offset", "steps", "ranges", "dense_until", "dense_every"}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"schedule: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
            kwargs = dict(value)
            if "steps" in kwargs:
                kwargs["steps"] = _as_tuple(kwargs["steps"], "steps")
            if "ranges" in kwargs:
                kwargs["ranges"] = tuple(_as_tuple(pair, "ranges") for pair in _as_tuple(kwargs["ranges"], "ranges"))
            return cls(**kwargs)
        raise ValueError(f"schedule: expected an int, a list of steps or a mapping, got {type(value).__name__}")


def _as_tuple(value: Any, key: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"schedule.{key}: {value!r} is a {type(value).__name__}, expected a list")
    return tuple(value)
