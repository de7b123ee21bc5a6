"""The consumer side: a thread that waits for each step's statistics and hands them on.

The training thread only enqueues (launched statistics, scalar tensors, counts). This thread
waits for results (blocking itself, never the training stream), writes Arrow batches to the
store and calls the observers (the rules engine). A failing observer is reported, never raised.

It works in batches: woken by the first item, it lets items gather for up to `batch_seconds`, or
until `batch_items` are queued, a drain is asked for or an urgent item (non-finite values, known on
the CPU at once) arrives, then takes every queued item at once and
writes them as one Arrow batch per table, so its fixed costs (and the time it holds the GIL the
training thread needs) are paid per batch, not per step. Observers still see every record, in order.

Bounded memory: the queue holds at most `max_items` items. When it is full (a stalled disk, a
slow rule), `put` waits at most `max_wait_seconds` for room, once per stall; while the queue stays
full after that, items are dropped at once (their launches released unread) and counted in
`dropped`, per kind, until the queue has drained to half. Training is never blocked for longer
than `max_wait_seconds` per stall, and memory never grows past the bound.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import pyarrow as pa

from ..own_warnings import warn
from ..records import InputRecord, Observer, PredictionRecord, ScalarRecord, StatsRecord
from ..stats import COUNT_FIELDS, PendingStats, Stats, divided
from ..store.schema import SCHEMAS, STAT_COLUMNS, compact_hist
from ..thread_cpu import ThreadCpu
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
    if stats is not None and len(stats) == n and (result_rows == np.arange(n)).all():
        return stats  # every name present, in result order (the usual case)
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


class ItemQueue:
    """The bounded FIFO from the training thread to the consumer: put() is a deque append, with no
    lock taken while there is room (a queue.Queue takes two, cold, on every step); the consumer takes
    everything queued at once."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Any] = deque()
        self._room = threading.Condition(threading.Lock())  # notified when the consumer takes items
        self.ready = threading.Event()  # something is queued (set by the put that makes it non-empty)

    def qsize(self) -> int:
        return len(self._items)

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """False when it stayed full for `timeout` seconds (None: wait until there is room)."""
        if len(self._items) >= self.maxsize:
            if timeout is not None and timeout <= 0:
                return False
            with self._room:
                if not self._room.wait_for(lambda: len(self._items) < self.maxsize, timeout):
                    return False
        self._items.append(item)
        if len(self._items) == 1:
            self.ready.set()
        return True

    def take_all(self) -> list[Any]:
        self.ready.clear()  # before taking: a put after this sets it again
        items = []
        while self._items:
            items.append(self._items.popleft())
        with self._room:
            self._room.notify_all()
        return items


class Consumer:
    def __init__(self, write: Callable[[str, pa.RecordBatch], None], observers: list[Observer], *,
                 max_items: int = 1024, max_wait_seconds: float = 0.01, batch_seconds: float = 0.5,
                 batch_items: int = 32, cpu: ThreadCpu | None = None) -> None:
        self._write = write
        self.batch_seconds = batch_seconds
        self.batch_items = min(batch_items, max(1, max_items // 4))
        self._wake = threading.Event()  # a drain or close: stop gathering, process now
        self.observers = observers
        self.max_wait_seconds = max_wait_seconds
        self._queue = ItemQueue(max(2, max_items))
        self._dropping = False
        self._closed = False
        self.errors = 0
        self.dropped: Counter[str] = Counter()  # items dropped because the queue was full, per kind
        self.unprocessed: Counter[str] = Counter()  # items left when close() stopped waiting, per kind
        self._unseen: Counter[str] = Counter()  # items of the batch in hand not yet seen by every observer
        self._abandoned = False
        self._thread = (cpu or ThreadCpu()).thread(self._run, "gradprobe-consumer")
        self._thread.start()

    def put(self, item: Item, urgent: bool = False) -> None:
        """Enqueues an item; never waits longer than max_wait_seconds (see the module docstring).
        urgent: process it now (a rule may have to stop the run)."""
        if self._closed:
            _discard(item)
            return
        if getattr(item, "exchange", None) is not None:
            self._queue.put(item)  # never dropped: every rank's consumer must take part in its exchange
            return
        if self._dropping and self._queue.qsize() <= self._queue.maxsize // 2:
            self._dropping = False
        if self._queue.put(item, 0 if self._dropping else self.max_wait_seconds):
            if urgent or self._queue.qsize() >= self.batch_items:
                self._wake.set()  # the consumer stops gathering
            return
        self._dropping = True
        self.dropped[item.kind] += 1
        _discard(item)

    def drain(self, timeout: float = 120.0) -> bool:
        """Waits until everything enqueued so far is processed (False when that took over `timeout`)."""
        done = threading.Event()
        if not self._queue.put(done, timeout):
            return False
        self._wake.set()
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
            self._wake.set()
            self._thread.join(timeout)
            return True
        self._abandoned = True
        self.unprocessed.update(self._unseen)  # taken off the queue (and written), not seen by the rules
        for item in self._queue.take_all():
            self._abandon(item)
        self._queue.put(_STOP)
        self._wake.set()
        return False

    def _abandon(self, item: Any) -> None:
        if isinstance(item, threading.Event):
            item.set()
        elif item is not _STOP:
            self.unprocessed[item.kind] += 1
            _discard(item)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            work: list[Item] = []
            for item in batch:
                if item is _STOP or isinstance(item, threading.Event):
                    self._process(work)  # everything before a marker is done when it is seen
                    work = []
                    if item is _STOP:
                        return
                    assert isinstance(item, threading.Event)
                    item.set()
                elif self._abandoned:
                    self._abandon(item)
                else:
                    work.append(item)
            self._process(work)

    def _next_batch(self) -> list[Any]:
        """Waits for an item, lets more gather (see the module docstring), then takes all queued."""
        while not self._queue.ready.wait(1.0):
            pass
        deadline = time.monotonic() + self.batch_seconds
        while not self._wake.is_set() and self._queue.qsize() < self.batch_items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wake.wait(remaining)
        self._wake.clear()
        return self._queue.take_all()

    def _process(self, items: list[Item]) -> None:
        """Reads the items' results, writes them as one batch per table, then tells the observers."""
        if not items:
            return
        out = _Tables()
        records: list[tuple[str, tuple[str, Any]]] = []
        for item in items:
            time.sleep(0)  # the GIL in short slices: a training thread waiting for it gets it now
            try:
                record = self._read(item, out)
            except Exception:  # never let one bad step stop the consumer
                self._warn_error("a step could not be recorded")
                continue
            if record is not None:
                records.append((item.kind, record))
        self._unseen = Counter(kind for kind, _ in records)
        for table, batch in out.batches():
            self._write(table, batch)
            time.sleep(0)
        batched = [observer for observer in self.observers if hasattr(observer, "on_records")]
        for observer in batched:  # the rule engine: the whole batch in one call
            try:
                observer.on_records([record for _, (_, record) in records])
            except Exception:
                self._warn_error(f"observer {type(observer).__name__} failed")
        for kind, (method, record) in records:
            if self._abandoned:
                return
            self._notify(method, record, skip=batched)
            self._unseen[kind] -= 1

    def _warn_error(self, what: str) -> None:
        self.errors += 1
        if self.errors <= 3:
            warn(f"gradprobe: {what}:\n{traceback.format_exc()}", RuntimeWarning, stacklevel=3)

    def _read(self, item: Item, out: _Tables) -> tuple[str, Any] | None:
        """One item's rows into `out`; the record for the observers (None: nothing to tell)."""
        if isinstance(item, StatsItem):
            discarded = item.pending is not None and item.pending.discarded  # shared with a dropped item
            if discarded and item.exchange is None:
                self.dropped[item.kind] += 1
                return None
            result = item.pending.result() if item.pending is not None and not discarded else None
            stats = expand(result, item.result_rows)
            scale = item.grad_scale.value() if item.grad_scale is not None else 1.0
            if scale != 1.0 and math.isfinite(scale) and scale > 0:
                stats = divided(stats, scale)
            if item.origin_only and not (stats.nans + stats.infs).any():
                return None
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
            out.add_stats(item, stats, ratio, present)
            return "on_stats", StatsRecord(item.step, item.mode, item.kind, item.names, present, stats, ratio)
        if isinstance(item, ScalarItem):
            if item.ready is not None:
                item.ready.synchronize()
            values = {name: float(v) for name, v in item.values.items()}
            out.add_scalars(item.step, item.mode, values, item.time)
            return "on_scalars", ScalarRecord(item.step, item.mode, values, item.time)
        if isinstance(item, InputItem):
            counts = {name: int(v) for name, v in item.counts.items()}
            out.add("inputs", pa.RecordBatch.from_pydict(
                {"step": [item.step] * len(counts), "mode": [item.mode] * len(counts),
                 "input": [item.input] * len(counts), "token": list(counts), "count": list(counts.values()),
                 "total": [item.total] * len(counts)}, schema=SCHEMAS["inputs"]))
            return "on_inputs", InputRecord(item.step, item.mode, counts, item.total)
        return "on_predictions", PredictionRecord(item.step, item.mode, item.labels, item.predictions)

    def _notify(self, method: str, record: Any, skip: Sequence[Any] = ()) -> None:
        for observer in list(self.observers):
            if not hasattr(observer, method) or any(observer is s for s in skip):
                continue
            try:
                getattr(observer, method)(record)
            except Exception:
                self._warn_error(f"observer {type(observer).__name__} failed")


def _discard(item: Item) -> None:
    """Frees what a dropped item holds (a launch's result slot), without reading it."""
    if isinstance(item, StatsItem) and item.pending is not None:
        item.pending.discard()


class _Tables:
    """The rows of one consumer batch, built into one Arrow batch per table (and hist presence)."""

    def __init__(self) -> None:
        self._stats: dict[bool, list[tuple[StatsItem, Stats, np.ndarray | None, np.ndarray]]] = {True: [], False: []}
        self._scalars: list[tuple[int, str, dict[str, float], float]] = []
        self._other: list[tuple[str, pa.RecordBatch]] = []

    def add_stats(self, item: StatsItem, stats: Stats, ratio: np.ndarray | None, present: np.ndarray) -> None:
        self._stats[stats.hist is not None].append((item, stats, ratio, present))

    def add_scalars(self, step: int, mode: str, values: dict[str, float], when: float) -> None:
        if values:
            self._scalars.append((step, mode, values, when))

    def add(self, table: str, batch: pa.RecordBatch) -> None:
        self._other.append((table, batch))

    def batches(self) -> list[tuple[str, pa.RecordBatch]]:
        out = [("stats", stats_batch(rows)) for rows in self._stats.values() if rows]
        if self._scalars:
            out.append(("scalars", scalar_batch(self._scalars)))
        return out + self._other


def stats_batch(rows: list[tuple[StatsItem, Stats, np.ndarray | None, np.ndarray]]) -> pa.RecordBatch:
    """One Arrow batch of several items' statistics (all with histograms, or all without)."""
    sizes = np.array([len(item.names) for item, _, _, _ in rows])
    total = int(sizes.sum())
    columns: dict[str, Any] = {
        "step": pa.array(np.repeat(np.array([item.step for item, _, _, _ in rows], np.int64), sizes)),
        "mode": _repeated_strings([item.mode for item, _, _, _ in rows], sizes),
        "kind": _repeated_strings([item.kind for item, _, _, _ in rows], sizes),
        "tensor": pa.concat_arrays([item.names_arrow for item, _, _, _ in rows]),
        "present": pa.array(np.concatenate([present for _, _, _, present in rows])),
    }
    for name in STAT_COLUMNS:
        columns[name] = pa.array(np.concatenate([getattr(stats, name) for _, stats, _, _ in rows]))
    hists = [stats.hist for _, stats, _, _ in rows if stats.hist is not None]
    columns["hist_lo"], columns["hist"] = compact_hist(np.concatenate(hists) if hists else None, total)
    if all(ratio is None for _, _, ratio, _ in rows):
        columns["ratio"] = pa.nulls(total, pa.float64())
    else:
        columns["ratio"] = pa.concat_arrays([pa.array(ratio, pa.float64()) if ratio is not None
                                             else pa.nulls(len(item.names), pa.float64())
                                             for item, _, ratio, _ in rows])
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=SCHEMAS["stats"])


def _repeated_strings(values: list[str], sizes: np.ndarray) -> pa.Array:
    """values[i] repeated sizes[i] times, as a string array built in Arrow (no Python string per row)."""
    distinct = list(dict.fromkeys(values))
    codes = np.array([distinct.index(v) for v in values], np.int32)
    return pa.array(distinct, pa.string()).take(pa.array(np.repeat(codes, sizes)))


def scalar_batch(rows: list[tuple[int, str, dict[str, float], float]]) -> pa.RecordBatch:
    """One Arrow batch of several steps' scalars."""
    sizes = [len(values) for _, _, values, _ in rows]
    return pa.RecordBatch.from_pydict(
        {"step": np.repeat([step for step, _, _, _ in rows], sizes),
         "mode": [mode for (_, mode, _, _), k in zip(rows, sizes) for _ in range(k)],
         "name": [name for _, _, values, _ in rows for name in values],
         "value": [value for _, _, values, _ in rows for value in values.values()],
         "time": np.repeat([when for _, _, _, when in rows], sizes)},
        schema=SCHEMAS["scalars"])
