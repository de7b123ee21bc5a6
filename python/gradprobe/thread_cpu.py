"""The CPU time of the threads one probe started (consumer, store writer, profiler, actions, rule
clock), so that gradprobe's cost counts every thread, not only what it does on the training thread:
a background thread that holds the GIL delays the training thread's kernel launches.

Live threads are read from their thread clocks (any thread may read them); a thread that ends adds
what it used as it leaves. Where thread clocks do not exist (not Linux or macOS) the total is NaN.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from .own_warnings import mark_own_thread


class ThreadCpu:
    def __init__(self) -> None:
        self._live: set[int] = set()
        self._finished = 0.0
        self._lock = threading.Lock()

    def thread(self, target: Callable[..., Any], name: str, args: tuple[Any, ...] = ()) -> threading.Thread:
        """A daemon thread (not started) whose CPU time counts here."""

        def run() -> None:
            mark_own_thread()
            with self._lock:
                self._live.add(threading.get_ident())
            try:
                target(*args)
            finally:
                spent = time.thread_time()
                with self._lock:
                    self._live.discard(threading.get_ident())
                    self._finished += spent

        return threading.Thread(target=run, name=name, daemon=True)

    def seconds(self) -> float:
        """CPU seconds so far of every thread made by `thread`, ended or running."""
        if not hasattr(time, "pthread_getcpuclockid"):
            return math.nan
        with self._lock:
            live, total = list(self._live), self._finished
        for ident in live:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(ident))
            except (OSError, ProcessLookupError):
                pass  # it ended a moment ago: its time is in _finished from the next call on
        return total
