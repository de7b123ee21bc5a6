"""Training progress: a bar (rich) with the loss and the throughput on a terminal; otherwise (logs,
pipes, --no-progress) a plain line every 10% of the steps or every 30 seconds, whichever comes first."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

LINES_PER_RUN = 10  # a line each time another tenth of the steps is done
LINE_EVERY_SECONDS = 30.0  # and at least this often, however slow the steps


class TrainingProgress:
    """`show=False` (no terminal, --no-progress, tests): progress lines and notes go to `log`."""

    def __init__(self, total_steps: int, description: str, log: Callable[[str], None], show: bool,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._log, self._show, self._clock = log, show, clock
        self._description, self._total = description, max(1, total_steps)
        self._started = self._last_line = clock()
        self._samples = 0
        self._done = 0
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
        self._done += 1
        now = self._clock()
        rate = self._samples / max(now - self._started, 1e-9)
        self._bar.update(self._task, advance=1, loss=f"{loss:.4f}", rate=f"{rate:.1f} samples/s")
        if not self._show and self._line_due(now):
            self._last_line = now
            self._log(self._line(loss, rate, now))

    def _line_due(self, now: float) -> bool:
        """At the step that completes each further 10% of the steps (and the last), or 30 s after the last line."""
        tenths, before = (self._done * LINES_PER_RUN // self._total, (self._done - 1) * LINES_PER_RUN // self._total)
        return tenths > before or self._done >= self._total or now - self._last_line >= LINE_EVERY_SECONDS

    def _line(self, loss: float, rate: float, now: float) -> str:
        elapsed = now - self._started
        left = elapsed / self._done * (self._total - self._done)
        return (f"{self._description}: step {self._done}/{self._total} ({100 * self._done / self._total:.0f}%)  "
                f"loss {loss:.4f}  {rate:.1f} samples/s  elapsed {_clock_text(elapsed)}  eta {_clock_text(left)}")

    def note(self, text: str) -> None:
        """A line above the bar (or to the log)."""
        if self._show:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            self._log(text)


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
