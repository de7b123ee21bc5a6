"""The consumer side: a thread that waits for each step's statistics and hands them on.

The training thread only enqueues (launched statistics, scalar tensors, counts). This thread
waits for results (blocking itself, never the training stream), writes Arrow batches to the
store and calls the observers (the rules engine). A failing observer is reported, never raised.

Bounded memory: the queue holds at most `max_items` items. When it is full (a stalled disk, a
slow rule), `put` waits at most `max_wait_seconds` for room, once per stall; while the queue stays
full after that, items are dropped at once (their launches released unread) and counted in
`dropped`, per kind, until the queue has drained to half. Training is never blocked for longer
than `max_wait_seconds` per stall, and memory never grows past the bound.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import pyarrow as pa

from ..records import InputRecord, Observer, PredictionRecord, ScalarRecord, StatsRecord
from ..stats import COUNT_FIELDS, PendingStats, Stats, divided
from ..store.schema import SCHEMAS, STAT_COLUMNS, compact_hist
from .loss_scale import ScaleReading


@dataclass
class StatsItem:
    """One kind's statistics at one step. Several items may share one fused launch."""

    step: int
    mode: str
    kind: str
    names: Sequence[str]
    names_arrow: pa.Array
    result_rows: np.ndarray  # per name: its row in the pending result, -1 when absent this step
    pending: PendingStats | None
    ratio_rows: np.ndarray | None = None  # updates: per name the row of its weight (for |dw| / |w|)
    histogram: bool = True  # False: the launch may carry counts for other rows; store none for these
    origin_only: bool = False  # a NaN/Inf-origin measurement: kept only when some row is non-finite
    # Across ranks (probe/distributed.py): (stats, present, histogram) -> every rank's rows combined.
    exchange: Callable[[Stats, np.ndarray, bool], tuple[Stats, np.ndarray]] | None = None
    # Gradients measured before a GradScaler unscaled them: their statistics are divided by this scale.
    grad_scale: ScaleReading | None = None


@dataclass
class ScalarItem:
    step: int
    mode: str
    values: dict[str, Any]  # floats or (CPU or pinned-copy) tensors
    ready: Any = None  # a CUDA event for the copies, when on a GPU
    time: float = field(default_factory=time.time)
    kind: str = "scalars"


@dataclass
class InputItem:
    step: int
    mode: str
    input: str
    counts: dict[str, Any]
    total: int
    kind: str = "inputs"


@dataclass
class PredictionItem:
    step: int
    mode: str
    labels: np.ndarray
    predictions: np.ndarray
    kind: str = "predictions"


Item = Union[StatsItem, ScalarItem, InputItem, PredictionItem]
_STOP = object()


def expand(stats: Stats | None, result_rows: np.ndarray) -> Stats:
    """One row per name: absent names get NaN moments and zero counts."""
    n = len(result_rows)
    table = np.full((n, len(STAT_COLUMNS)), np.nan)
    table[:, [i for i, c in enumerate(STAT_COLUMNS) if c in COUNT_FIELDS]] = 0
    hist = None
    present = result_rows >= 0
    if stats is not None and present.any():
        table[present] = stats.table()[result_rows[present]]
        if stats.hist is not None:
            hist = np.zeros((n, stats.hist.shape[1]), np.int64)
            hist[present] = stats.hist[result_rows[present]]
    return Stats.from_table(table, hist)


class Consumer:
    def __init__(self, write: Callable[[str, pa.RecordBatch], None], observers: list[Observer], *,
                 max_items: int = 1024, max_wait_seconds: float = 0.01) -> None:
        self._write = write
        self.observers = observers
        self.max_wait_seconds = max_wait_seconds
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(2, max_items))
        self._dropping = False
        self._closed = False
        self.errors = 0
        self.dropped: Counter[str] = Counter()  # items dropped because the queue was full, per kind
        self.unprocessed: Counter[str] = Counter()  # items left when close() stopped waiting, per kind
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="gradprobe-consumer", daemon=True)
        self._thread.start()

    def put(self, item: Item) -> None:
        """Enqueues an item; never waits longer than max_wait_seconds (see the module docstring)."""
        if self._closed:
            _discard(item)
            return
        if getattr(item, "exchange", None) is not None:
            self._queue.put(item)  # never dropped: every rank's consumer must take part in its exchange
            return
        if self._dropping and self._queue.qsize() <= self._queue.maxsize // 2:
            self._dropping = False
        try:
            if self._dropping:
                self._queue.put_nowait(item)
            else:
                self._queue.put(item, timeout=self.max_wait_seconds)
            return
        except queue.Full:
            pass
        self._dropping = True
        self.dropped[item.kind] += 1
        _discard(item)

    def drain(self, timeout: float = 120.0) -> bool:
        """Waits until everything enqueued so far is processed (False when that took over `timeout`)."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Processes what is queued for at most `timeout` seconds; the rest is released unread and
        counted per kind in `unprocessed`. False when it had to give up."""
        if self._closed:
            return not self.unprocessed
        drained = self.drain(timeout)
        self._closed = True
        if drained:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            return True
        self._abandoned = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._abandon(item)
        self._queue.put(_STOP)
        return False

    def _abandon(self, item: Any) -> None:
        if isinstance(item, threading.Event):
            item.set()
        elif item is not _STOP:
            self.unprocessed[item.kind] += 1
            _discard(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self._abandoned:
                self._abandon(item)
                continue
            try:
                self._handle(item)
            except Exception:  # never let one bad step stop the consumer
                self.errors += 1
                if self.errors <= 3:
                    warnings.warn(f"gradprobe: a step could not be recorded:\n{traceback.format_exc()}",
                                  RuntimeWarning, stacklevel=2)

    def _handle(self, item: Item) -> None:
        if isinstance(item, StatsItem):
            discarded = item.pending is not None and item.pending.discarded  # shared with a dropped item
            if discarded and item.exchange is None:
                self.dropped[item.kind] += 1
                return
            result = item.pending.result() if item.pending is not None and not discarded else None
            stats = expand(result, item.result_rows)
            scale = item.grad_scale.value() if item.grad_scale is not None else 1.0
            if scale != 1.0 and math.isfinite(scale) and scale > 0:
                stats = divided(stats, scale)
            if item.origin_only and not (stats.nans + stats.infs).any():
                return
            # No result (a dropped launch that must still take part in its exchange): nothing present.
            present = item.result_rows >= 0 if result is not None else np.zeros(len(item.result_rows), bool)
            if not item.histogram:
                stats = dataclasses.replace(stats, hist=None)
            if item.exchange is not None:
                stats, present = item.exchange(stats, present, item.histogram)
            ratio = None
            if item.ratio_rows is not None and result is not None:
                weight_l2 = np.where(item.ratio_rows >= 0, result.l2[np.maximum(item.ratio_rows, 0)], np.nan)
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = stats.l2 / weight_l2
            self._write("stats", stats_batch(item, stats, ratio, present))
            self._notify("on_stats", StatsRecord(item.step, item.mode, item.kind, item.names, present, stats, ratio))
        elif isinstance(item, ScalarItem):
            if item.ready is not None:
                item.ready.synchronize()
            values = {name: float(v) for name, v in item.values.items()}
            self._write("scalars", scalar_batch(item.step, item.mode, values, item.time))
            self._notify("on_scalars", ScalarRecord(item.step, item.mode, values, item.time))
        elif isinstance(item, InputItem):
            counts = {name: int(v) for name, v in item.counts.items()}
            self._write("inputs", pa.RecordBatch.from_pydict(
                {"step": [item.step] * len(counts), "mode": [item.mode] * len(counts),
                 "input": [item.input] * len(counts), "token": list(counts), "count": list(counts.values()),
                 "total": [item.total] * len(counts)}, schema=SCHEMAS["inputs"]))
            self._notify("on_inputs", InputRecord(item.step, item.mode, counts, item.total))
        else:
            self._notify("on_predictions", PredictionRecord(item.step, item.mode, item.labels, item.predictions))

    def _notify(self, method: str, record: Any) -> None:
        for observer in list(self.observers):
            if not hasattr(observer, method):
                continue
            try:
                getattr(observer, method)(record)
            except Exception:
                self.errors += 1
                if self.errors <= 3:
                    warnings.warn(f"gradprobe: observer {type(observer).__name__} failed:\n{traceback.format_exc()}",
                                  RuntimeWarning, stacklevel=2)


def _discard(item: Item) -> None:
    """Frees what a dropped item holds (a launch's result slot), without reading it."""
    if isinstance(item, StatsItem) and item.pending is not None:
        item.pending.discard()


def stats_batch(item: StatsItem, stats: Stats, ratio: np.ndarray | None, present: np.ndarray) -> pa.RecordBatch:
    n = len(item.names)
    columns: dict[str, Any] = {
        "step": pa.array(np.full(n, item.step, np.int64)),
        "mode": pa.array([item.mode] * n, pa.string()),
        "kind": pa.array([item.kind] * n, pa.string()),
        "tensor": item.names_arrow,
        "present": pa.array(present),
    }
    for name in STAT_COLUMNS:
        columns[name] = pa.array(getattr(stats, name))
    columns["hist_lo"], columns["hist"] = compact_hist(stats.hist, n)
    columns["ratio"] = pa.array(ratio) if ratio is not None else pa.nulls(n, pa.float64())
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=SCHEMAS["stats"])


def scalar_batch(step: int, mode: str, values: dict[str, float], when: float) -> pa.RecordBatch:
    k = len(values)
    return pa.RecordBatch.from_pydict({"step": [step] * k, "mode": [mode] * k, "name": list(values),
                                       "value": list(values.values()), "time": [when] * k},
                                      schema=SCHEMAS["scalars"])
