"""A probe's lifeline: it is closed (its steps recorded, its status set) however the process ends.

- Never closed (no `with`, no close()): closed at interpreter exit with status "not-closed" and a
  warning that says how to close it.
- SIGTERM (what schedulers and `docker stop` send): where the script left the default disposition,
  the signal unwinds the script (`Terminated`, a SystemExit: `with` blocks and `finally` clauses run,
  so the probe closes with status "interrupted"), and once everything at exit has run the process
  ends by SIGTERM itself, as it would have without gradprobe. A handler the script installed is
  called instead (chained); an ignored signal stays ignored.
- SIGINT (Ctrl-C): Python's own handler raises KeyboardInterrupt; the status is "interrupted", and a
  script that ends by it still ends by SIGINT.
Handlers are installed only from the main thread (Python's rule) and put back at close.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(SystemExit):
    """A fatal signal with its default disposition, raised so that the script unwinds (the process
    still ends by that signal, at exit)."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


# The fatal signal to re-raise once every exit handler has run (registered at import, so it runs last).
_deferred: list[int] = []


def _end_by_deferred_signal() -> None:
    if _deferred:
        signum = _deferred[0]
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


atexit.register(_end_by_deferred_signal)


class Lifeline:
    def __init__(self, close: Callable[[str], None]) -> None:
        self._close = close  # close(status), a no-op once closed
        self.signal: int | None = None  # the signal that arrived, if any
        self._previous: dict[int, Any] = {}
        atexit.register(self._at_exit)
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                try:
                    previous = signal.getsignal(signum)
                    if previous is not signal.SIG_IGN and previous is not None:
                        self._previous[signum] = signal.signal(signum, self._on_signal)
                except (ValueError, OSError):  # an embedded interpreter may refuse: no handler then
                    pass

    @property
    def interrupted(self) -> bool:
        return self.signal is not None

    def release(self) -> None:
        """Puts the script's handlers back (where ours is still installed) and forgets the exit hook."""
        atexit.unregister(self._at_exit)
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            try:
                if signal.getsignal(signum) == self._on_signal:
                    signal.signal(signum, previous)
            except (ValueError, OSError):
                pass
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        previous = self._previous.get(signum)
        if callable(previous):  # the script's handler, or Python's (SIGINT: KeyboardInterrupt)
            previous(signum, frame)
            return
        if signum not in _deferred:
            _deferred.append(signum)
        raise Terminated(signum)

    def _at_exit(self) -> None:
        if getattr(sys, "last_type", None) is KeyboardInterrupt:  # Ctrl-C ended the script, uncaught
            # CPython ends such a process by SIGINT after its exit handlers, unless one of them runs code
            # through its eval entry point, which clears that (closing can): keep the exit status ourselves.
            self.signal = signal.SIGINT
            if signal.SIGINT not in _deferred:
                _deferred.append(signal.SIGINT)
        self._close("interrupted" if self.interrupted else "not-closed")
