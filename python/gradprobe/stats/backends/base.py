"""What a statistics backend provides: reads one device's rows of a table, possibly asynchronously."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..inputs import Device, Table


class ResultsRingFull(RuntimeError):
    """Every result slot of a GPU engine holds an unread result: the launch was not made."""


class Launch(Protocol):
    """Work enqueued for one device; results are read into caller-provided arrays."""

    def done(self) -> bool: ...

    def read(self, out: np.ndarray, hist: np.ndarray | None) -> None: ...

    def release(self) -> None: ...


class Backend(Protocol):
    name: str

    def can_read(self, device: Device) -> bool: ...

    def launch(self, table: Table, device: Device, hist: bool) -> Launch: ...


class Finished:
    """A launch that completed synchronously (CPU and reference backends)."""

    def __init__(self, out: np.ndarray, hist: np.ndarray | None) -> None:
        self._out, self._hist = out, hist

    def done(self) -> bool:
        return True

    def table(self) -> np.ndarray:
        """The (rows, FIELDS) result in place (read-only use)."""
        return self._out

    def read(self, out: np.ndarray, hist: np.ndarray | None) -> None:
        out[...] = self._out
        if hist is not None and self._hist is not None:
            hist[...] = self._hist

    def release(self) -> None:
        pass
