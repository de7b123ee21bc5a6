"""Runs actions off the training thread: a queue and a worker, timeouts, retries with backoff, a
cooldown per (action, rule code). A failing server never raises into training; the finding itself
is already in events.jsonl before any action runs, so nothing is lost."""

from __future__ import annotations

import queue
import threading
import time
import warnings
from typing import Any, Callable

from ..redact import redact
from ..rules.base import Finding


class ActionRunner:
    def __init__(self, actions: list, record_event: Callable[[dict], None], engine: Any,
                 backoff_seconds: float = 0.5) -> None:
        self.actions = actions
        self._record_event = record_event
        self._engine = engine
        self._backoff = backoff_seconds
        self._last_run: dict[tuple[str, str], float] = {}
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failures = 0

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
            else:
                self._ensure_thread()
                self._queue.put((action, finding))

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="gradprobe-actions", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._execute(*item)

    def _execute(self, action, finding: Finding) -> None:
        context = {"engine": self._engine, "run": getattr(self._engine.probe, "out_dir", "")}
        attempts = max(1, action.retries) if not action.inline else 1
        for attempt in range(attempts):
            try:
                action.run(finding, context)
                self._record_event({"type": "action", "action": action.describe(), "code": finding.code,
                                    "step": finding.step, "attempt": attempt + 1})
                return
            except Exception as error:  # a dead server or refused connection must not reach training
                last = error
                if attempt + 1 < attempts:
                    time.sleep(self._backoff * 2 ** attempt)
        self.failures += 1
        self._record_event({"type": "action_failed", "action": action.describe(), "code": finding.code,
                            "step": finding.step, "error": type(last).__name__ + ": " + _redact(str(last))})
        warnings.warn(f"gradprobe: action {action.describe()} failed after {attempts} attempts "
                      f"({type(last).__name__}); the finding is in events.jsonl", RuntimeWarning, stacklevel=2)


def _redact(text: str) -> str:
    """Error texts can quote URLs and credentials; keep scheme, host and port only."""
    return redact(text)
