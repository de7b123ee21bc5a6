"""The consumer side: a thread that waits for each step's statistics and hands them on.

The training thread only enqueues (launched statistics, scalar tensors, counts). This thread
waits for results (blocking itself, never the training stream), writes Arrow batches to the
store and calls the observers (the rules engine). A failing observer is reported, never raised.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import pyarrow as pa

from ..stats import PendingStats, Stats
from ..store.schema import SCHEMAS, STAT_COLUMNS, compact_hist


@dataclass(frozen=True)
class StatsRecord:
    """One step's statistics of one kind: every named tensor, present or not (absent rows are NaN)."""

    step: int
    mode: str
    kind: str
    names: Sequence[str]
    present: np.ndarray
    stats: Stats  # full length: one row per name
    ratio: np.ndarray | None = None  # updates: |w_after - w_before| / |w_after|


@dataclass(frozen=True)
class ScalarRecord:
    step: int
    mode: str
    values: dict[str, float]
    time: float


class Observer(Protocol):
    def on_stats(self, record: StatsRecord) -> None: ...

    def on_scalars(self, record: ScalarRecord) -> None: ...


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


@dataclass
class ScalarItem:
    step: int
    mode: str
    values: dict[str, Any]  # floats or (CPU or pinned-copy) tensors
    ready: Any = None  # a CUDA event for the copies, when on a GPU
    time: float = field(default_factory=time.time)


@dataclass
class InputItem:
    step: int
    mode: str
    input: str
    counts: dict[str, Any]
    total: int


@dataclass
class PredictionItem:
    step: int
    mode: str
    labels: np.ndarray
    predictions: np.ndarray


def expand(stats: Stats | None, result_rows: np.ndarray) -> Stats:
    """One row per name: absent names get NaN moments and zero counts."""
    n = len(result_rows)
    table = np.full((n, len(STAT_COLUMNS)), np.nan)
    count_columns = [i for i, c in enumerate(STAT_COLUMNS) if c in ("numel", "finite", "zeros", "nans", "infs")]
    table[:, count_columns] = 0
    hist = None
    present = result_rows >= 0
    if stats is not None and present.any():
        table[present] = stats.table()[result_rows[present]]
        if stats.hist is not None:
            hist = np.zeros((n, stats.hist.shape[1]), np.int64)
            hist[present] = stats.hist[result_rows[present]]
    return Stats.from_table(table, hist)


class Consumer:
    def __init__(self, write: Callable[[str, pa.RecordBatch], None], observers: list[Observer]) -> None:
        self._write = write
        self.observers = observers
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="gradprobe-consumer", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        if not self._closed:
            self._queue.put(item)

    def drain(self, timeout: float = 120.0) -> bool:
        """Waits until everything enqueued so far is processed."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 120.0) -> None:
        if self._closed:
            return
        self.drain(timeout)
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._handle(item)
            except Exception:  # never let one bad step stop the consumer
                self.errors += 1
                if self.errors <= 3:
                    warnings.warn(f"gradprobe: a step could not be recorded:\n{traceback.format_exc()}",
                                  RuntimeWarning, stacklevel=2)

    def _handle(self, item: Any) -> None:
        if isinstance(item, StatsItem):
            result = item.pending.result() if item.pending is not None else None
            stats = expand(result, item.result_rows)
            if not item.histogram:
                stats = dataclasses.replace(stats, hist=None)
            ratio = None
            if item.ratio_rows is not None and result is not None:
                weight_l2 = np.where(item.ratio_rows >= 0, result.l2[np.maximum(item.ratio_rows, 0)], np.nan)
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = stats.l2 / weight_l2
            self._write("stats", stats_batch(item, stats, ratio))
            record = StatsRecord(item.step, item.mode, item.kind, item.names, item.result_rows >= 0, stats, ratio)
            self._notify("on_stats", record)
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
            self._notify("on_inputs", item.step, item.mode, counts, item.total)
        elif isinstance(item, PredictionItem):
            self._notify("on_predictions", item.step, item.mode, item.labels, item.predictions)

    def _notify(self, method: str, *args: Any) -> None:
        for observer in list(self.observers):
            if not hasattr(observer, method):
                continue
            try:
                getattr(observer, method)(*args)
            except Exception:
                self.errors += 1
                if self.errors <= 3:
                    warnings.warn(f"gradprobe: observer {type(observer).__name__} failed:\n{traceback.format_exc()}",
                                  RuntimeWarning, stacklevel=2)


def stats_batch(item: StatsItem, stats: Stats, ratio: np.ndarray | None) -> pa.RecordBatch:
    n = len(item.names)
    columns: dict[str, Any] = {
        "step": pa.array(np.full(n, item.step, np.int64)),
        "mode": pa.array([item.mode] * n, pa.string()),
        "kind": pa.array([item.kind] * n, pa.string()),
        "tensor": item.names_arrow,
        "present": pa.array(item.result_rows >= 0),
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
