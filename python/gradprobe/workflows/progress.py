"""A training progress bar (rich) with the loss and the throughput; plain log lines when disabled."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    """`show=False` (tests, logs to a callback): notes go to `log`, the bar is not drawn."""

    def __init__(self, total_steps: int, description: str, log: Callable[[str], None], show: bool) -> None:
        self._log, self._show = log, show
        self._started = time.perf_counter()
        self._samples = 0
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                             TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                             console=Console(stderr=False), transient=False, disable=not show)
        self._task = self._bar.add_task(description, total=total_steps, loss="-", rate="")

    def __enter__(self) -> TrainingProgress:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._bar.stop()

    def advance(self, loss: float, samples: int) -> None:
        self._samples += samples
        rate = self._samples / max(time.perf_counter() - self._started, 1e-9)
        self._bar.update(self._task, advance=1, loss=f"{loss:.4f}", rate=f"{rate:.1f} samples/s")

    def note(self, text: str) -> None:
        """A line above the bar (or to the log)."""
        if self._show:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            self._log(text)
