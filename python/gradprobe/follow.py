"""`gradprobe show RUN --follow`: the terminal summary, refreshed while the run is being written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .show import show_run
from .store import open_run

# Statuses after which nothing more is written: a probe's closing status, or a killed writer.
FINISHED = ("completed", "stopped", "failed", "interrupted", "not-closed", "killed", "not_attached")


def follow_run(path: str | Path, top: int = 12, interval: float = 2.0,
               clear: Callable[[], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Prints the summary every `interval` seconds until the run is finished (then once more, final)
    or Ctrl-C; returns the last summary's count of unreadable parts."""
    if interval <= 0:
        raise ValueError(f"--interval must be positive, not {interval}")
    try:
        while True:
            status = open_run(path).status  # read before the summary: a run that ends now gets a final one
            if clear is not None:
                clear()
            unreadable = show_run(path, top=top)
            if status in FINISHED:
                print(f"run {status}: no longer following")
                return unreadable
            print(f"run {status}: following, refreshed every {interval:g} s (Ctrl-C stops)", flush=True)
            sleep(interval)
    except KeyboardInterrupt:
        print("stopped following")
        return 0
