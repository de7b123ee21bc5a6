"""Writes a run directory: meta.json, events.jsonl and rotated Parquet parts, off the training thread.

Failure policy: an unusable directory is an error at construction. Later write failures (disk
full, a vanished mount) are warned about once, the run is marked truncated, training goes on, and
the rows stay in memory (up to StoreConfig.max_pending_rows) to be retried at the next flush.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..own_warnings import warn
from ..thread_cpu import ThreadCpu
from .config import StoreConfig
from .ownership import WriterLock, is_gradprobe_run, mark_as_gradprobe_run, remove_gradprobe_entries
from .schema import EVENTS_FILE, META_FILE, PART_GLOB, SCHEMAS, TABLES, part_metadata

# Pending batches of one table merged into one when this many are waiting (see RunWriter._compact).
COMPACT_BATCHES = 64
# Dictionary encoding where it pays (names repeated on every row): tried on the numbers it costs a
# third of the write and falls back anyway. Row-group statistics only where readers filter (step, time).
_TEXT_COLUMNS = {name: [f.name for f in schema if pa.types.is_string(f.type)] for name, schema in SCHEMAS.items()}


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used (exists with another run, unwritable, ...)."""


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"_{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def prepare_run_dir(path: Path, exist: str) -> None:
    """Creates or checks the run directory. exist: 'error' (default), 'append' or 'overwrite'.

    Overwrite and append apply only to a directory that gradprobe wrote (it holds gradprobe's
    marker); overwrite removes gradprobe's own entries and nothing else.
    """
    if exist not in ("error", "append", "overwrite"):
        raise ValueError(f"exist must be 'error', 'append' or 'overwrite', not {exist!r}")
    if (path / META_FILE).exists():
        if exist == "error":
            raise RunDirectoryError(f"{path} already holds a run; pass exist='append' or exist='overwrite'")
        if not is_gradprobe_run(path):
            raise RunDirectoryError(f"{path} holds a {META_FILE} that gradprobe did not write (no marker file); "
                                    f"refusing to {exist} it: choose another directory")
        if exist == "overwrite":
            try:
                remove_gradprobe_entries(path)
            except OSError as error:
                raise RunDirectoryError(f"cannot overwrite the run directory {path}: {error}") from error
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_file = path / f"_write_test_{os.getpid()}"
        probe_file.write_bytes(b"ok")
        probe_file.unlink()
        mark_as_gradprobe_run(path)
    except OSError as error:
        raise RunDirectoryError(f"cannot write the run directory {path}: {error}") from error


class RunWriter:
    """Accepts Arrow record batches from any thread; a writer thread turns them into parts."""

    def __init__(self, path: Path, rank: int, config: StoreConfig, cpu: ThreadCpu | None = None) -> None:
        self.path = path
        self.rank = rank
        self.config = config
        self.truncated = False
        self.rows_written = {name: 0 for name in TABLES}
        self.rows_lost = 0
        self._pending: dict[str, list[pa.RecordBatch]] = {name: [] for name in TABLES}
        self._pending_rows = {name: 0 for name in TABLES}
        self._sequence = {name: self._last_sequence(name) for name in TABLES}
        # Bounded: a stalled disk makes write() wait (on the consumer thread), never grows memory.
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, config.max_queued_batches))
        self._events_lock = threading.Lock()
        self._warned = False
        self._last_flush = time.monotonic()
        self._closed = False
        try:
            self._lock: WriterLock | None = WriterLock(path, rank)  # readers tell a killed run by it
        except OSError as error:
            raise RunDirectoryError(f"{path}: rank {rank} is already being written by a live process "
                                    f"({error.strerror})") from error
        self._thread = (cpu or ThreadCpu()).thread(self._run, "gradprobe-store")
        self._thread.start()

    # -- called from any thread -------------------------------------------------------------
    def write(self, table: str, batch: pa.RecordBatch) -> None:
        """Queues a batch; waits while StoreConfig.max_queued_batches are already queued."""
        if not self._closed and batch.num_rows:
            self._queue.put((table, batch))

    def event(self, record: Mapping[str, Any]) -> None:
        """Appends one event line and flushes it: a crash right after still leaves it on disk."""
        line = json.dumps({"time": time.time(), "rank": self.rank, **record}, default=str) + "\n"
        with self._events_lock:
            try:
                with open(self.path / EVENTS_FILE, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
            except OSError as error:
                self._write_failed(f"events: {error}")

    def flush(self, timeout: float = 30.0) -> None:
        """Writes everything queued so far as closed parts."""
        done = threading.Event()
        try:
            self._queue.put(("__flush__", done), timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Writes what is queued and stops the writer thread, waiting at most about `timeout` seconds
        in all; False when the thread did not finish (a stuck disk: the rows still queued are lost
        and the run is marked truncated). The writer lock is released either way."""
        if self._closed:
            return True
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self._closed = True
        finished = False
        try:
            self._queue.put(("__stop__", None), timeout=max(0.0, deadline - time.monotonic()))
            self._thread.join(max(0.0, deadline - time.monotonic()))
            finished = not self._thread.is_alive()
        except queue.Full:
            pass  # the writer thread is stuck on the disk; it is a daemon and dies with the process
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
        if not finished:
            self.truncated = True
        return finished

    # -- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as error:  # never let the thread die silently: the run is marked truncated
                self._write_failed(f"writer thread: {type(error).__name__}: {error}")

    def _step(self) -> bool:
        """One turn of the writer thread; False to stop."""
        try:
            item = self._queue.get(timeout=max(0.05, self.config.flush_seconds / 4))
        except queue.Empty:
            item = None
        if item is not None:
            name, payload = item
            if name == "__stop__":
                return False
            if name == "__flush__":
                try:
                    self._flush_all()
                finally:
                    payload.set()
                return True
            self._pending[name].append(payload)
            self._pending_rows[name] += payload.num_rows
            self._bound_memory(name)
            if len(self._pending[name]) >= COMPACT_BATCHES:
                self._compact(name)
        due = time.monotonic() - self._last_flush >= self.config.flush_seconds
        if due or any(rows >= self.config.flush_rows for rows in self._pending_rows.values()):
            self._flush_all()
        return True

    def _flush_all(self) -> None:
        self._last_flush = time.monotonic()
        for name in TABLES:
            if self._pending[name]:
                self._write_part(name)

    def _write_part(self, name: str) -> None:
        directory = self.path / name / f"rank{self.rank}"
        sequence = self._sequence[name] + 1
        final = directory / f"part-{sequence:06d}.parquet"
        tmp = directory / f"_part-{sequence:06d}.tmp"
        try:
            table = pa.Table.from_batches(self._pending[name], schema=SCHEMAS[name])
            table = table.replace_schema_metadata(part_metadata())
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp, compression="zstd", use_dictionary=_TEXT_COLUMNS[name],
                           write_statistics=["step", "time"])
            os.replace(tmp, final)
        except (OSError, pa.ArrowException) as error:
            self._write_failed(f"{name} part {sequence}: {error}")
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return
        self._sequence[name] = sequence
        self.rows_written[name] += table.num_rows
        self._pending[name].clear()
        self._pending_rows[name] = 0

    def _compact(self, name: str) -> None:
        """Many small batches into one: each batch carries its own buffers and metadata, so a part's
        worth of one-step batches held for flush_seconds costs several times its rows' size."""
        table = pa.Table.from_batches(self._pending[name], schema=SCHEMAS[name]).combine_chunks()
        self._pending[name] = table.to_batches()

    def _bound_memory(self, name: str) -> None:
        while self._pending_rows[name] > self.config.max_pending_rows and len(self._pending[name]) > 1:
            dropped = self._pending[name].pop(0)
            self._pending_rows[name] -= dropped.num_rows
            self.rows_lost += dropped.num_rows
            self.truncated = True

    def _write_failed(self, what: str) -> None:
        self.truncated = True
        if not self._warned:
            self._warned = True
            warn(f"gradprobe: writing the run directory failed ({what}); training continues, "
                          f"rows are kept in memory and retried, and the run is marked truncated",
                          RuntimeWarning, stacklevel=2)

    def _last_sequence(self, name: str) -> int:
        directory = self.path / name / f"rank{self.rank}"
        numbers = [int(p.stem.split("-")[1]) for p in directory.glob(PART_GLOB)] if directory.exists() else []
        return max(numbers, default=0)


def update_meta(path: Path, **fields: Any) -> None:
    """Merges fields into meta.json (rank 0 only); failures are warnings, never errors."""
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta.update(fields)
        write_json_atomic(meta_path, meta)
    except (OSError, ValueError) as error:
        warn(f"gradprobe: could not update {meta_path}: {error}", RuntimeWarning, stacklevel=2)
