"""The step-phase timer: splits each step's wall time into data wait, forward, backward,
optimizer step, gradprobe's own time and the rest. The probe's hooks on the model and the optimizers
call it (probe/hooks.py): it puts no hook into torch itself.

The step is a sequence of segments; each hook closes the running segment into the phase it
belongs to, minus gradprobe's own time spent inside it (`overhead()`, the probe's running total):
  forward:   the model's forward (every call in the step, summed)
  backward:  from the end of a forward to the next forward or the optimizer step (loss and backward)
  optimizer: optimizer.step()
  data_wait: waiting in a data loader's next() (loader.py), wherever it happens
  gradprobe: the probe's hooks and probe.step()
  total:     from the previous step's end to this one's
On a GPU, forward, backward and optimizer are replaced by the device's time between CUDA events
recorded at the same boundaries, read when they have completed (a step or more later; never a
synchronisation while training: only close() waits for the last step's events). No GPU: the CPU
times above.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from collections.abc import Callable

import torch

from ..records import PhaseRecord
from ..store.schema import PHASE_COLUMNS

FORWARD, BACKWARD, OPTIMIZER, OTHER = "forward", "backward", "optimizer", "other"
_SLOT = {name: i for i, name in enumerate(PHASE_COLUMNS)}
# CUDA events kept per step: forward start, forward end, optimizer start, optimizer end.
_EVENTS = 4
_RING = 8  # steps whose events may still be pending on the device
READY_STEPS = 65_536


class DeviceClock:
    """A ring of preallocated CUDA events: per step the four boundaries, read once completed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._events = [[torch.cuda.Event(enable_timing=True) for _ in range(_EVENTS)] for _ in range(_RING)]
        self._recorded = [[False] * _EVENTS for _ in range(_RING)]
        self._slot = 0

    def mark(self, boundary: int) -> None:
        if not self._recorded[self._slot][boundary] or boundary in (1, 3):  # starts: the first; ends: the last
            self._events[self._slot][boundary].record(torch.cuda.current_stream(self.device))
            self._recorded[self._slot][boundary] = True

    @property
    def slot(self) -> int:
        """This step's slot (its times are read by `times` once complete)."""
        return self._slot

    def advance(self) -> None:
        """The next step takes the next slot (the caller has read that slot's previous times)."""
        self._slot = (self._slot + 1) % _RING
        self._recorded[self._slot] = [False] * _EVENTS

    def wait(self, slot: int) -> None:
        """Waits for a slot's last event (at close only: the device finishes what is queued)."""
        recorded = [i for i in range(_EVENTS) if self._recorded[slot][i]]
        if recorded:
            self._events[slot][recorded[-1]].synchronize()

    def times(self, slot: int) -> dict[str, float] | None:
        """Seconds of forward, backward and optimizer on the device, or None while pending."""
        events, recorded = self._events[slot], self._recorded[slot]
        last = max((i for i in range(_EVENTS) if recorded[i]), default=None)
        if last is None:
            return {}
        if not events[last].query():
            return None
        result = {}
        for phase, (a, b) in ((FORWARD, (0, 1)), (BACKWARD, (1, 2)), (OPTIMIZER, (2, 3))):
            if recorded[a] and recorded[b]:
                result[phase] = events[a].elapsed_time(events[b]) / 1e3
        return result


class StepTimer:
    """Boundaries in (from the training thread); PhaseRecords out (appended to `ready`, drained by the
    profiler thread)."""

    def __init__(self, node: str, rank: int, overhead: Callable[[], float], device: torch.device | None = None) -> None:
        self.node, self.rank = node, rank
        # Bounded: a profiler thread stuck on a stalled disk drops the oldest steps, never grows memory.
        self.ready: deque[PhaseRecord] = deque(maxlen=READY_STEPS)
        self._overhead = overhead
        self._clock: DeviceClock | None = DeviceClock(device) if device is not None and device.type == "cuda" else None
        self._pending: deque[tuple[int, PhaseRecord]] = deque()
        self._depth = 0
        self._step_start_wall: float | None = None
        self._step_start: float | None = None
        self._reset()

    def _reset(self) -> None:
        self._acc = dict.fromkeys(PHASE_COLUMNS, 0.0)
        self._touched: set[str] = set()
        self._state = OTHER
        self._segment_start = time.perf_counter()
        self._segment_overhead = self._overhead()

    # -- segments -------------------------------------------------------------------------------
    def _close_segment(self, now: float) -> None:
        own = self._overhead()
        if self._step_start is None:  # the first step starts at its first event
            self._step_start, self._step_start_wall = now, time.time()
        elif self._state != OTHER:
            self._acc[self._state] += max(0.0, (now - self._segment_start) - (own - self._segment_overhead))
            self._touched.add(self._state)
        self._segment_start, self._segment_overhead = now, own

    def forward_begins(self) -> None:
        """The model's forward begins (nested calls of the model count once)."""
        self._depth += 1
        if self._depth == 1:
            self._close_segment(time.perf_counter())
            self._state = FORWARD
            if self._clock is not None:
                self._clock.mark(0)

    def forward_ends(self) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self._close_segment(time.perf_counter())
            self._touched.add(FORWARD)
            self._state = BACKWARD if torch.is_grad_enabled() else OTHER
            if self._clock is not None:
                self._clock.mark(1)

    def optimizer_begins(self) -> None:
        self._close_segment(time.perf_counter())
        self._state = OPTIMIZER
        if self._clock is not None:
            self._clock.mark(2)

    def optimizer_ends(self) -> None:
        self._close_segment(time.perf_counter())
        self._touched.add(OPTIMIZER)
        self._state = OTHER
        if self._clock is not None:
            self._clock.mark(3)

    def data_wait(self, started: float, ended: float) -> None:
        """A data loader's next() waited from `started` to `ended` (perf_counter seconds)."""
        state = self._state
        self._close_segment(started)
        self._acc["data_wait"] += ended - started
        self._touched.add("data_wait")
        self._segment_start = ended
        self._state = state

    # -- step end -------------------------------------------------------------------------------
    def end_step(self, step: int, mode: str, gradprobe_seconds: float) -> float:
        """Ends the step (called at the end of probe.step()); returns its total seconds."""
        now = time.perf_counter()
        if self._state == BACKWARD:  # a forward with no optimizer step (evaluation, accumulation)
            self._state = OTHER
        self._close_segment(now)
        start = self._step_start if self._step_start is not None else now
        phases = {p: (self._acc[p] if p in self._touched else math.nan) for p in PHASE_COLUMNS}
        phases["gradprobe"] = gradprobe_seconds
        phases["total"] = now - start
        record = PhaseRecord(step, mode, self.node, self.rank, self._step_start_wall or time.time(), phases)
        self._step_start, self._step_start_wall = now, time.time()
        self._reset()
        self._segment_start = now
        if self._clock is None:
            self.ready.append(record)
        else:
            self._pending.append((self._clock.slot, record))
            self._read_device_times(force=len(self._pending) >= _RING)  # frees the slot advance() reuses
            if self._clock is not None:
                self._clock.advance()
        return phases["total"]

    def _read_device_times(self, force: bool = False) -> None:
        while self._pending:
            slot, record = self._pending[0]
            try:
                times = self._clock.times(slot) if self._clock is not None else {}
            except RuntimeError as error:  # never break training for a timing
                warnings.warn(f"gradprobe: CUDA event timing failed, CPU times are kept: {error}", RuntimeWarning,
                              stacklevel=2)
                self._clock, times = None, {}
            if times is None and not force:
                return
            self._pending.popleft()
            force = False
            if times:
                record = PhaseRecord(record.step, record.mode, record.node, record.rank, record.time,
                                     {**record.phases, **times})
            self.ready.append(record)

    def close(self) -> None:
        if self._pending and self._clock is not None:  # at close the last steps get their device times too
            try:
                self._clock.wait(self._pending[-1][0])
            except RuntimeError:
                pass
        while self._pending:
            self._read_device_times(force=True)
