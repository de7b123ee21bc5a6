"""The profiler a probe runs: the step-phase timer and the loader patch on the training thread;
on its own thread, every `system_interval` seconds, a system sample and the finished steps'
phases go to the run store (`system` and `phases` tables) and to the rule engine.

The training thread only timestamps and appends to deques; building Arrow batches, writing and
evaluating rules happen on the profiler thread ("gradprobe-profiler").
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pyarrow as pa
import torch
import torch.distributed as dist

from ..own_warnings import warn
from ..records import LoaderRecord, PhaseRecord, RanksRecord, StartupRecord, SystemRecord
from ..rules import RuleEngine
from ..store import RunWriter
from ..store.schema import PHASE_COLUMNS, PHASES_SCHEMA, SYSTEM_SCHEMA
from ..store.writer import update_meta
from ..thread_cpu import ThreadCpu
from .capture import CaptureSteps, DeepCapture
from .config import ProfilerConfig
from .loader import LoaderPatch
from .nvml import pci_bus_id
from .phases import StepTimer
from .ranks import RankExchange
from .sampler import SystemSampler, Values

Event = Callable[[dict[str, Any]], None]
LOG = logging.getLogger("gradprobe.profiler")
# Without a sampler the thread still drains the timer this often.
DRAIN_SECONDS = 0.5


def model_cuda_devices(model: torch.nn.Module) -> list[torch.device]:
    devices = {p.device for p in model.parameters() if p.device.type == "cuda"}
    return sorted(devices, key=lambda d: d.index or 0)


def gpu_identifiers(devices: Sequence[torch.device]) -> list[str]:
    """Each device's PCI bus id (torch >= 2.5 reports it), else its UUID as NVML spells it."""
    ids = []
    for device in devices:
        props = torch.cuda.get_device_properties(device)
        domain, bus, slot = (getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
        if domain is not None and bus is not None and slot is not None:
            ids.append(pci_bus_id(domain, bus, slot))
        else:
            ids.append(f"GPU-{props.uuid}".replace("GPU-GPU-", "GPU-"))
    return ids


class Profiler:
    # Initialisation is the process's: only its first probe's first step is timed from the
    # process's start (a later probe in the same process, a test or a sweep, would count the
    # earlier runs as initialisation).
    _process_stepped: ClassVar[bool] = False

    def __init__(self, config: ProfilerConfig, *, model: torch.nn.Module,
                 optimizers: Sequence[torch.optim.Optimizer], run_dir: Path, rank: int, world_size: int,
                 writer: RunWriter, event: Event, engine: RuleEngine | None, actions: Iterable[Any] = (),
                 overhead: Callable[[], float] = lambda: 0.0, cpu: ThreadCpu | None = None) -> None:
        self.config = config
        self.node, self.rank = socket.gethostname(), rank
        self._writer, self._event, self._engine, self._run_dir = writer, event, engine, run_dir
        devices = model_cuda_devices(model)
        self._records: deque[LoaderRecord | StartupRecord | RanksRecord] = deque(maxlen=1024)  # bounded, as above
        self._loaders: list[dict[str, Any]] = []
        self._step, self._mode = 0, "train"
        self._first_step_done = False
        self._failed = False
        self._local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        self._cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self._cuda = bool(devices)
        self._training_thread = threading.get_ident()
        self.timer: StepTimer | None = None
        self._loader: LoaderPatch | None = None
        self._sampler: SystemSampler | None = None
        self._exchange: RankExchange | None = None
        self._stop = threading.Event()
        self._cpu = cpu or ThreadCpu()
        self._thread = self._cpu.thread(self._run, "gradprobe-profiler")
        try:
            self._start(config, model, optimizers, devices, rank, world_size, run_dir, event, actions, overhead)
        except BaseException:  # a failed start leaves torch as it found it
            self.close()
            raise

    def _start(self, config: ProfilerConfig, model: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer],
               devices: list[torch.device], rank: int, world_size: int, run_dir: Path, event: Event,
               actions: Iterable[Any], overhead: Callable[[], float]) -> None:
        if config.phases:
            self.timer = StepTimer(self.node, rank, overhead, devices[0] if devices else None)
            if config.loader:
                self._loader = LoaderPatch(self.data_wait, self._on_loader)
        if config.system_interval is not None:
            self._sampler = SystemSampler(gpu_identifiers(devices) if config.gpu else ())
            if not config.gpu:
                self._sampler.unavailable["gpu"] = "profiler.gpu is off"
        self.capture = DeepCapture(run_dir, rank, config.profile_steps, config.top_operators, self._cuda, event)
        for action in actions:
            if isinstance(action, CaptureSteps):
                action.bind(self.capture)
        self._exchange = RankExchange(rank, config.exchange_every) \
            if world_size > 1 and dist.is_available() and dist.is_initialized() else None
        self._report_start()
        self.capture.before_first_step()
        self._thread.start()

    def _report_start(self) -> None:
        unavailable = dict(self._sampler.unavailable) if self._sampler is not None else {}
        facts = {"config": self.config.to_dict(), "node": self.node, "cpus": self._cpus,
                 "gpus": self._sampler.gpu_devices if self._sampler is not None else [], "unavailable": unavailable,
                 "process_start_time": psutil.Process().create_time()}
        if unavailable:  # said once, through logging: a CPU-only run is no fault
            only_cpu = set(unavailable) == {"gpu"} and not self._cuda
            LOG.log(logging.INFO if only_cpu else logging.WARNING, "gradprobe: the system sampler cannot read: %s "
                    "(said once; recorded in meta.json's profiler.unavailable)",
                    "; ".join(f"{k} ({v})" for k, v in unavailable.items()))
        self.facts = facts  # the probe puts them into its `start` event (every rank's events.jsonl)
        self._meta = facts
        self._update_meta()

    def _update_meta(self) -> None:
        if self.rank == 0:
            update_meta(self._run_dir, profiler={**self._meta, "loaders": self._loaders})

    # -- training thread ----------------------------------------------------------------------
    def data_wait(self, started: float, ended: float) -> None:
        """A data loader's next() waited from `started` to `ended` (time.perf_counter seconds).
        Only the training thread's waits count (a prefetching thread's are not the step's)."""
        if self.timer is not None and threading.get_ident() == self._training_thread:
            self.timer.data_wait(started, ended)

    def _on_loader(self, config: dict[str, Any]) -> None:
        self._records.append(LoaderRecord(self._step, self._mode, config["num_workers"], config["pin_memory"],
                                          config["batch_size"], config["prefetch_factor"], self._cpus,
                                          self._local_ranks, self._cuda))
        if config not in self._loaders:  # once per distinct loader configuration
            self._loaders.append(config)
            self._update_meta()

    def end_step(self, step: int, mode: str, gradprobe_seconds: float) -> None:
        """The end of probe.step() for `step` of `mode`; gradprobe_seconds: the probe's own time in it."""
        if self._exchange is not None and self._exchange.due(step, mode):
            started = time.perf_counter()
            self._records.append(self._exchange.exchange(step, mode))
            gradprobe_seconds += time.perf_counter() - started
        if self.timer is not None:
            self.timer.end_step(step, mode, gradprobe_seconds)
        if not self._first_step_done:
            self._first_step_done = True
            self._startup(step, mode)
        self.capture.end_step(step, mode)
        self._step, self._mode = step + 1, mode

    def _startup(self, step: int, mode: str) -> None:
        if Profiler._process_stepped:
            return
        Profiler._process_stepped = True
        seconds = time.time() - self._meta["process_start_time"]
        self._records.append(StartupRecord(step, mode, seconds))
        self._meta["first_step_seconds"] = seconds
        self._update_meta()

    def close(self, timeout: float = 5.0) -> None:
        """Stops the thread, restores torch's loader and the hooks, and writes what is left (with
        a last sample, so that a run shorter than the interval has one). Safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.timer is not None:
            self.timer.close()
        if self._loader is not None:
            self._loader.restore()
        if self._thread.ident is not None:  # else the start failed: nothing ran, nothing to write
            self.capture.close(self._step)
            if not self._thread.is_alive():
                self._tick(sample=self._sampler is not None)
        if self._sampler is not None:
            self._sampler.close()

    # -- profiler thread ------------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.config.system_interval or DRAIN_SECONDS
        while not self._stop.wait(interval):
            self._tick(sample=self._sampler is not None)

    def _tick(self, sample: bool) -> None:
        try:
            if sample and self._sampler is not None:
                self._system(time.time(), self._sampler.sample())
            self._phases()
            while self._records:
                self._give(self._records.popleft())
        except Exception as error:  # the profiler must never take the training down
            if not self._failed:
                self._failed = True
                warn(f"gradprobe: the profiler thread failed and goes on: {error!r}", RuntimeWarning,
                              stacklevel=2)
                self._event({"type": "error", "where": "profiler thread", "error": repr(error)})

    def _system(self, now: float, values: Values) -> None:
        devices, metrics, numbers = [], [], []
        for device, row in values.items():
            for metric, value in row.items():
                devices.append(device)
                metrics.append(metric)
                numbers.append(value)
        n = len(numbers)
        self._writer.write("system", pa.RecordBatch.from_arrays(
            [pa.array([now] * n, pa.float64()), pa.array([self.node] * n, pa.string()), pa.array(devices, pa.string()),
             pa.array(metrics, pa.string()), pa.array(numbers, pa.float64())], schema=SYSTEM_SCHEMA))
        record = SystemRecord(now, self.node, self.rank, self._step, self._mode, values)
        if self._exchange is not None:
            for device, row in values.items():
                if device.startswith("gpu") and "gpu_util_pct" in row:
                    self._exchange.add_utilization(device, row["gpu_util_pct"])
        self._give(record)

    def _phases(self) -> None:
        if self.timer is None or not self.timer.ready:
            return
        records: list[PhaseRecord] = []
        while self.timer.ready:
            records.append(self.timer.ready.popleft())
        columns = [pa.array([r.step for r in records], pa.int64()), pa.array([r.mode for r in records], pa.string()),
                   pa.array([r.node for r in records], pa.string()), pa.array([r.time for r in records], pa.float64())]
        columns += [pa.array([r.phases.get(p, math.nan) for r in records], pa.float64()) for p in PHASE_COLUMNS]
        self._writer.write("phases", pa.RecordBatch.from_arrays(columns, schema=PHASES_SCHEMA))
        for record in records:
            if self._exchange is not None:
                self._exchange.add_phases(record)
            self._give(record)

    def _give(self, record: SystemRecord | PhaseRecord | LoaderRecord | StartupRecord | RanksRecord) -> None:
        if self._engine is None:
            return
        if isinstance(record, SystemRecord):
            self._engine.on_system(record)
        elif isinstance(record, PhaseRecord):
            self._engine.on_phases(record)
        elif isinstance(record, LoaderRecord):
            self._engine.on_loader(record)
        elif isinstance(record, StartupRecord):
            self._engine.on_startup(record)
        else:
            self._engine.on_ranks(record)
