"""How the run directory is written (one frozen dataclass, built from arguments or a config file),
and the strict field checker every config dataclass uses (types and ranges at construction)."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; the message names the key, value and expectation."""


def check_fields(instance: Any, where: str = "", minimums: Mapping[str, float] | None = None,
                 maximums: Mapping[str, float] | None = None) -> None:
    """Raises ConfigError unless every field of a dataclass instance has its annotated type (no
    coercion: "5" is not a float, True is not an int) and lies within its minimum and maximum.

    Why strict: a coerced or late-failing value once killed the writer thread after construction.
    """
    hints = typing.get_type_hints(type(instance))
    prefix = f"{where}." if where else ""
    for f in fields(instance):
        value = getattr(instance, f.name)
        expected = hints[f.name]
        if not _matches(value, expected):
            raise ConfigError(f"{prefix}{f.name}: {value!r} is a {type(value).__name__}, "
                              f"expected {_describe(expected)}")
        low = (minimums or {}).get(f.name)
        if low is not None and value is not None and not value >= low:
            raise ConfigError(f"{prefix}{f.name}: {value!r} is out of range, expected a value >= {low}")
        high = (maximums or {}).get(f.name)
        if high is not None and value is not None and not value <= high:
            raise ConfigError(f"{prefix}{f.name}: {value!r} is out of range, expected a value <= {high}")


def _matches(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:  # an int is a fine float; NaN is not a setting
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if origin in (Mapping, dict, typing.Mapping):
        return isinstance(value, Mapping) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # an annotation this checker does not know: the dataclass's own checks apply


def _describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if expected is type(None):
        return "null"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list, each item {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if origin in (Mapping, dict, typing.Mapping):
        return f"a mapping, each key {_describe(args[0])} and each value {_describe(args[1])}"
    if isinstance(expected, type):
        article = "an" if expected.__name__[0] in "aeiouAEIOU" else "a"
        return f"{article} {expected.__name__}"
    return str(expected)


# The longest wait any setting may ask for (a day): longer ones overflow the thread timeouts.
MAX_SECONDS = 86_400.0


@dataclass(frozen=True)
class StoreConfig:
    """How the run directory is written."""

    flush_seconds: float = 5.0  # a closed part at least this often: readers see data while training runs
    flush_rows: int = 50_000
    max_pending_rows: int = 2_000_000  # rows kept in memory while the disk refuses writes
    # Batches waiting for the writer thread; when full, the consumer thread waits for it (never the
    # training thread: the probe's own bounded queue sits in between and drops with a count).
    max_queued_batches: int = 256

    def __post_init__(self) -> None:
        check_fields(self, "store", {"flush_seconds": 0.0, "flush_rows": 1, "max_pending_rows": 1,
                                     "max_queued_batches": 1}, {"flush_seconds": MAX_SECONDS})

