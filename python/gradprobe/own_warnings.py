"""gradprobe's runtime warnings, safe on its own threads.

With warnings turned into errors (`python -W error`, pytest's filterwarnings) a warning raises. On
the training thread that is the user's choice; on a gradprobe thread (consumer, store writer,
profiler, actions, rule clock) the exception would end the thread, and the probe's close would then
wait for work that never finishes: recorded data lost, the end of training delayed. There, a
warning that a filter turns into an error is logged on the `gradprobe` logger instead and kept for
`take_escaped()` (the test suite fails on any).
"""

from __future__ import annotations

import logging
import threading
import warnings

_thread_kind = threading.local()
_escaped: list[str] = []
_lock = threading.Lock()


def mark_own_thread() -> None:
    """Called first on each thread gradprobe starts (thread_cpu.ThreadCpu.thread)."""
    _thread_kind.own = True


def warn(message: str, category: type[Warning] = RuntimeWarning, stacklevel: int = 2) -> None:
    """warnings.warn(message, category, stacklevel), which never raises on a gradprobe thread."""
    if not getattr(_thread_kind, "own", False):
        warnings.warn(message, category, stacklevel=stacklevel + 1)
        return
    try:
        warnings.warn(message, category, stacklevel=stacklevel + 1)
    except Warning:
        with _lock:
            _escaped.append(message)
        logging.getLogger("gradprobe").error("%s", message)


def take_escaped() -> list[str]:
    """The warnings that a filter turned into errors on gradprobe threads since the last call."""
    with _lock:
        taken = list(_escaped)
        _escaped.clear()
    return taken
