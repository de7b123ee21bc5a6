"""Dispatch of a statistics call: inputs grouped per device, each group to the best backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._layout import FIELDS, HIST_BINS
from .backends import BACKEND_NAMES, Backend, Launch
from .backends.base import Finished
from .backends.cpu import CpuBackend
from .backends.cuda import CudaBackend
from .backends.cupy import CupyBackend
from .backends.reference import ReferenceBackend
from .inputs import Device, InputError, Table, build_table, device_name
from .post_step import PostStepTable
from .result import Stats

_NANS, _INFS = FIELDS.index("nans"), FIELDS.index("infs")

# Preference per device kind when no backend is named.
_PREFERENCE = {"cpu": ("cpu", "torch"), "cuda": ("cuda", "cupy", "torch")}


class ScratchPool:
    """Reused read buffers for results (the native (rows, FIELDS) table and the histogram counts).

    Stats.from_table copies what it keeps, so a buffer goes back to the pool as soon as the result
    is built: a probe reading the same tables every step allocates no new read buffers. Thread-safe
    (concurrent result() calls each take their own buffers)."""

    def __init__(self) -> None:
        self._free: dict[tuple[int, bool], list[tuple[np.ndarray, np.ndarray | None]]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def buffers(self, rows: int, histogram: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        key = (rows, histogram)
        with self._lock:
            free = self._free.get(key)
            pair = free.pop() if free else None
        if pair is None:
            pair = (np.empty((rows, len(FIELDS)), np.float64),
                    np.empty((rows, HIST_BINS), np.uint64) if histogram else None)
        try:
            yield pair
        finally:
            with self._lock:
                self._free.setdefault(key, []).append(pair)


class PendingStats:
    """Statistics being computed. `done()` never blocks; `result()` waits and returns Stats."""

    def __init__(self, n: int, launches: list[tuple[np.ndarray, Launch]], histogram: bool,
                 pool: ScratchPool | None = None) -> None:
        self._n = n  # output rows
        self._launches = launches
        self._histogram = histogram
        self._pool = pool or ScratchPool()
        self._result: Stats | None = None
        self.discarded = False

    def done(self) -> bool:
        return self._result is not None or all(launch.done() for _, launch in self._launches)

    def discard(self) -> None:
        """Releases the launches unread (their result slots go back to the engine); result() then fails."""
        for _, launch in self._launches:
            launch.release()
        self._launches = []
        self.discarded = self._result is None

    def any_nonfinite(self) -> bool | None:
        """Whether some row holds a NaN or Inf, when that is known without waiting or copying
        (launches that completed synchronously, on the CPU); None otherwise."""
        if self._result is not None:
            return bool((self._result.nans + self._result.infs).any())
        if self.discarded or not all(isinstance(launch, Finished) for _, launch in self._launches):
            return None
        columns = [_NANS, _INFS]
        return any(bool(launch.table()[:, columns].any()) for _, launch in self._launches
                   if isinstance(launch, Finished))

    def result(self) -> Stats:
        if self.discarded:
            raise RuntimeError("these statistics were discarded unread")
        if self._result is None:
            with self._pool.buffers(self._n, self._histogram) as (out, hist):
                if hist is not None:
                    hist.fill(0)  # rows of a launch without histograms stay zero
                for rows, launch in self._launches:
                    if len(self._launches) == 1 and len(rows) == self._n:  # rows are arange(n) then
                        launch.read(out, hist)
                    else:
                        with self._pool.buffers(len(rows), hist is not None) as (part, part_hist):
                            if part_hist is not None:
                                part_hist.fill(0)
                            launch.read(part, part_hist)
                            out[rows] = part
                            if hist is not None:
                                hist[rows] = part_hist
                    launch.release()
                self._launches = []
                self._result = Stats.from_table(out, hist)
        return self._result


class StatsComputer:
    """Owns the backends (and their reusable engines and buffers); one per probe or per process."""

    def __init__(self, cpu_threads: int = 0) -> None:
        self._cpu_threads = cpu_threads
        self._instances: dict[str, Backend] = {}
        self._unavailable: dict[str, str] = {}
        self._pool = ScratchPool()  # read buffers shared by every result of this computer
        self._ranges: dict[int, np.ndarray] = {}  # np.arange(n), made once per n

    def backend(self, name: str) -> Backend:
        """The named backend; RuntimeError saying why when it cannot run here."""
        if name not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
        if name in self._instances:
            return self._instances[name]
        if name in self._unavailable:
            raise RuntimeError(f"backend {name!r} is unavailable: {self._unavailable[name]}")
        try:
            instance = self._create(name)
        except (RuntimeError, ImportError) as error:
            self._unavailable[name] = str(error)
            raise RuntimeError(f"backend {name!r} is unavailable: {error}") from error
        self._instances[name] = instance
        return instance

    def _create(self, name: str) -> Backend:
        if name == "cpu":
            return CpuBackend(self._cpu_threads)
        if name == "cuda":
            return CudaBackend()
        if name == "cupy":
            # Also on a CUDA build when named explicitly (GPU checks run it); picked by preference
            # only when the compiled module cannot run.
            return CupyBackend()
        try:
            import torch  # noqa: F401  (optional: the reference backend needs it)
        except ImportError as error:
            raise RuntimeError("torch is not installed") from error
        return ReferenceBackend()

    def available(self) -> list[str]:
        names = []
        for name in BACKEND_NAMES:
            try:
                self.backend(name)
            except RuntimeError:
                continue
            names.append(name)
        return names

    def unavailable(self) -> dict[str, str]:
        """Backends that cannot run here, with the reason."""
        self.available()
        return dict(self._unavailable)

    def _pick(self, device: Device, requested: str | None, first_row: int) -> Backend:
        if requested is not None:
            backend = self.backend(requested)
            if not backend.can_read(device):
                raise InputError(f"tensor {first_row}: it is on {device_name(device)}, which backend "
                                 f"{requested!r} cannot read")
            return backend
        reasons = []
        for name in _PREFERENCE[device[0]]:
            try:
                return self.backend(name)
            except RuntimeError as error:
                reasons.append(str(error))
        raise RuntimeError(f"no backend can read {device_name(device)}: " + "; ".join(reasons))

    def launch(self, a: Sequence[Any], b: Sequence[Any] | None, *, histogram: bool,
               backend: str | None) -> PendingStats:
        return self.launch_table(build_table(a, b), histogram=histogram, backend=backend)

    def launch_table(self, table: Table, *, histogram: bool, backend: str | None) -> PendingStats:
        """Launches a table built elsewhere (the probe reads its tables natively)."""
        n = len(table)
        launches = []
        for device, rows in table.groups().items():
            chosen = self._pick(device, backend, int(rows[0]))
            part = table if len(rows) == n else table.subset(rows)
            launches.append((rows, chosen.launch(part, device, histogram)))
        return PendingStats(n, launches, histogram, self._pool)

    def pending(self, rows: int, launch: Launch, histogram: bool) -> PendingStats:
        """A launch made elsewhere (a native CaptureSet's slot), covering rows 0..rows-1."""
        index = self._ranges.get(rows)
        if index is None:
            index = self._ranges[rows] = np.arange(rows)
        return PendingStats(rows, [(index, launch)], histogram, self._pool)

    def launch_post_step(self, table: PostStepTable, *, histogram: bool, backend: str | None = None) -> PendingStats:
        """The fused CPU post-step operation (see stats.post_step); rows as PostStepTable documents."""
        if backend not in (None, "cpu"):
            raise ValueError(f"the post-step pass is a CPU operation; backend {backend!r} does not run it")
        cpu = self.backend("cpu")
        assert isinstance(cpu, CpuBackend)
        rows = table.output_rows
        return PendingStats(rows, [(np.arange(rows), cpu.launch_post_step(table, histogram))], histogram, self._pool)
