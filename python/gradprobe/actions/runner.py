"""Runs actions off the training thread: a queue and a worker, timeouts, retries with backoff, a
cooldown per (action, rule code). A failing server never raises into training; the finding itself
is already in events.jsonl before any action runs, so nothing is lost."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..own_warnings import warn
from ..redact import redact
from ..rules import Finding
from ..thread_cpu import ThreadCpu
from .base import Action, ActionContext


class ActionRunner:
    """Takes each finding (RuleEngine's on_finding) to the actions that want it.

    Inline actions (Log, StopTraining) run at once on the caller's thread; the others on one
    worker thread, through a queue of at most `max_queued` findings: past that, findings are
    skipped for the queued actions and counted (`action_skipped` events, reason "queue full");
    they are in events.jsonl already.

    close(timeout) waits at most `timeout` seconds for the queued actions; each one it did not run
    (queued, or still running when the time was up) is recorded as an `action_dropped` event.
    """

    def __init__(self, actions: Sequence[Action], record_event: Callable[[dict[str, Any]], None],
                 context: ActionContext, backoff_seconds: float = 0.5, max_queued: int = 1000,
                 cpu: ThreadCpu | None = None) -> None:
        self._cpu = cpu or ThreadCpu()
        self.actions = list(actions)
        self._record_event = record_event
        self._context = context
        self._backoff = backoff_seconds
        self._last_run: dict[tuple[str, str], float] = {}
        self._queue: queue.Queue[tuple[Action, Finding] | None] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._abandoned = threading.Event()  # close() gave up waiting: run nothing more
        self._running: tuple[Action, Finding] | None = None
        self.failures = 0
        self.dropped = 0

    def submit(self, finding: Finding) -> None:
        for index, action in enumerate(self.actions):
            if not action.wants(finding):
                continue
            key = (f"{index}:{action.name}", finding.code)
            now = time.monotonic()
            if action.cooldown_seconds and now - self._last_run.get(key, -1e18) < action.cooldown_seconds:
                self._record_event({"type": "action_skipped", "action": action.describe(), "code": finding.code,
                                    "step": finding.step, "reason": "cooldown"})
                continue
            self._last_run[key] = now
            if action.inline:
                self._execute(action, finding)
                continue
            self._ensure_thread()
            try:
                self._queue.put_nowait((action, finding))
            except queue.Full:
                self._record_event({"type": "action_skipped", "action": action.describe(), "code": finding.code,
                                    "step": finding.step, "reason": "queue full"})

    def close(self, timeout: float = 5.0) -> None:
        """Runs what is queued for at most `timeout` seconds; records each action it did not run."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return
        self._abandoned.set()  # the worker drops what it takes from now on; we drop the rest
        running = self._running
        if running is not None:
            self._dropped(*running, f"still running after close() waited {timeout:g} s")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._dropped(*item, f"not run: close() waited {timeout:g} s")

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = self._cpu.thread(self._work, "gradprobe-actions")
            self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._abandoned.is_set():
                self._dropped(*item, "not run: close() stopped waiting")
                continue
            self._running = item
            self._execute(*item)
            self._running = None

    def _dropped(self, action: Action, finding: Finding, reason: str) -> None:
        self.dropped += 1
        self._record_event({"type": "action_dropped", "action": action.describe(), "code": finding.code,
                            "step": finding.step, "reason": reason})

    def _execute(self, action: Action, finding: Finding) -> None:
        attempts = max(1, action.retries) if not action.inline else 1
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                action.run(finding, self._context)
                self._record_event({"type": "action", "action": action.describe(), "code": finding.code,
                                    "step": finding.step, "attempt": attempt + 1})
                return
            except Exception as error:  # a dead server or refused connection must not reach training
                last = error
                if attempt + 1 < attempts and self._abandoned.wait(self._backoff * 2 ** attempt):
                    return  # close() stopped waiting and recorded this action as dropped
        self.failures += 1
        self._record_event({"type": "action_failed", "action": action.describe(), "code": finding.code,
                            "step": finding.step, "error": type(last).__name__ + ": " + _redact(str(last))})
        warn(f"gradprobe: action {action.describe()} failed after {attempts} attempts "
                      f"({type(last).__name__}); the finding is in events.jsonl", RuntimeWarning, stacklevel=2)


def _redact(text: str) -> str:
    """Error texts can quote URLs and credentials; keep scheme, host and port only."""
    return redact(text)
