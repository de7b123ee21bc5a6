"""Rules over the profiler's system samples (SystemRecord): CPU, I/O, GPU utilisation and memory.

Defaults follow SageMaker Debugger's rules of the same name; their `patience` (samples skipped at
the start, while a run loads data and compiles) is shorter here because gradprobe samples every
500 ms by default, not every 100 ms. Windows count samples, not seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import metrics as m
from ..records import SystemRecord
from .base import Finding, Rule, Severity


def gpu_values(record: SystemRecord, metric: str) -> dict[str, float]:
    """Per GPU device, the metric's value in this sample (GPUs that could not report it are absent)."""
    return {device: values[metric] for device, values in record.values.items()
            if m.is_gpu(device) and metric in values}


def core_values(record: SystemRecord) -> list[float]:
    return [values[m.CPU_UTIL] for device, values in record.values.items()
            if m.is_core(device) and m.CPU_UTIL in values]


def host_value(record: SystemRecord, metric: str) -> float | None:
    value = record.values.get(m.HOST, {}).get(metric)
    return None if value is None else float(value)


@dataclass
class _SampleWindow(Rule):
    """Shared: skip `patience` samples, then judge each full window of `window` samples."""

    window: int = 120
    patience: int = 60
    _seen: int = 0
    _flags: deque[bool] = field(default_factory=lambda: deque(maxlen=100_000))

    def _judge(self, record: SystemRecord, flag: bool | None) -> float | None:
        """Adds one sample's verdict (None: the sample cannot be judged); the share (0-100) of
        flagged samples when a window is full, else None. A full window starts a new one."""
        self._seen += 1
        if flag is None or self._seen <= self.patience:
            return None
        self._flags.append(bool(flag))
        if len(self._flags) < self.window:
            return None
        share = 100.0 * sum(self._flags) / len(self._flags)
        self._flags.clear()
        return share


@dataclass
class CPUBottleneck(_SampleWindow):
    """The CPU is the bottleneck: with GPUs, GPU utilisation below `gpu_threshold` while a core is
    above `cpu_threshold`, in more than `threshold` percent of a window's samples. Without a GPU,
    only with `cpu_only=True`: every core together (the host's total) above `cpu_threshold` —
    reported as a CPU-bound step, never as a GPU claim (off by default: a CPU training that uses
    every core is CPU-bound by design).

    Why: the GPU waits for the CPU (pre-processing, Python overhead, too few loader workers); on a
    CPU-only run, other work competes with the training for the cores.
    Typical causes: data augmentation on the main process, tokenisation per step, other processes
    or threads burning the cores.
    Try: more DataLoader workers, pre-processing offline, fewer competing threads; look at
    `proc_cpu_pct` against the host's `cpu_util_pct`.
    Defaults: SageMaker's (threshold 50 %, cpu_threshold 90 %, gpu_threshold 10 %).
    """

    code = "GP200"
    threshold: float = 50.0
    cpu_threshold: float = 90.0
    gpu_threshold: float = 10.0
    cpu_only: bool = False

    def on_system(self, record: SystemRecord) -> list[Finding]:
        gpus = gpu_values(record, m.GPU_UTIL)
        if gpus:
            cores = core_values(record)
            flag: bool | None = (bool(cores) and max(gpus.values()) < self.gpu_threshold
                                 and max(cores) > self.cpu_threshold)
        elif not self.cpu_only:
            return []
        else:
            total = host_value(record, m.CPU_UTIL)
            flag = None if total is None else total > self.cpu_threshold
        share = self._judge(record, flag)
        if share is None or share <= self.threshold:
            return []
        if gpus:
            return [self.finding(record.step, record.mode, f"CPU bottleneck: in {share:.0f}% of the last {self.window} "
                                 f"samples the GPUs were below {self.gpu_threshold:g}% busy while a core was above "
                                 f"{self.cpu_threshold:g}%. Next: more DataLoader workers, move pre-processing off "
                                 "the training loop", ("cpu",), share_pct=share)]
        return [self.finding(record.step, record.mode, f"CPU-bound step: in {share:.0f}% of the last {self.window} "
                             f"samples the host's cores together were above {self.cpu_threshold:g}% busy: the step "
                             "waits for the CPU. Next: compare proc_cpu_pct with the host's cpu_util_pct; stop "
                             "competing threads or processes", ("cpu",), share_pct=share)]


@dataclass
class IOBottleneck(_SampleWindow):
    """I/O wait above `io_threshold` percent with GPU utilisation below `gpu_threshold` (or no
    GPU), in more than `threshold` percent of a window's samples.

    Why: the training waits for storage (reading a data set from a network file system, writing
    checkpoints synchronously).
    Try: a local copy of the data, more loader workers with prefetching, asynchronous checkpoints.
    Defaults: SageMaker's (threshold 50 %, io_threshold 50 %, gpu_threshold 70 %).
    """

    code = "GP201"
    threshold: float = 50.0
    io_threshold: float = 50.0
    gpu_threshold: float = 70.0

    def on_system(self, record: SystemRecord) -> list[Finding]:
        iowait = host_value(record, m.CPU_IOWAIT)
        gpus = gpu_values(record, m.GPU_UTIL)
        flag = None if iowait is None else (iowait > self.io_threshold
                                            and (not gpus or max(gpus.values()) < self.gpu_threshold))
        share = self._judge(record, flag)
        if share is None or share <= self.threshold:
            return []
        return [self.finding(record.step, record.mode, f"I/O bottleneck: in {share:.0f}% of the last {self.window} "
                             f"samples the CPUs waited for I/O more than {self.io_threshold:g}% of the time"
                             f"{' with the GPUs under-used' if gpus else ''}. Next: copy the data set to local disk, "
                             "prefetch with more loader workers, write checkpoints asynchronously", ("io",),
                             share_pct=share)]


def _percentiles(values: deque[float], *qs: float) -> list[float]:
    return [float(v) for v in np.percentile(np.fromiter(values, float, len(values)), qs)]


@dataclass
class LowGPUUtilization(Rule):
    """A GPU is under-used: over a window, its utilisation's p95 is below `threshold_p95`, or it
    fluctuates (p95 above `threshold_p95` but p5 below `threshold_p5`). Silent without GPUs.

    Why: paid accelerator time idles; fluctuation means the GPU waits for something in bursts.
    Typical causes: small batches, a data loader or CPU bottleneck, synchronisations (.item()),
    a blocking collective.
    Try: a larger batch, more loader workers, remove per-step host syncs.
    Defaults: SageMaker's (threshold_p95 70, threshold_p5 10, window 500).
    """

    code = "GP202"
    default_severity = Severity.INFO
    threshold_p95: float = 70.0
    threshold_p5: float = 10.0
    window: int = 500
    patience: int = 100
    _seen: int = 0
    _util: dict[str, deque[float]] = field(default_factory=dict)

    def on_system(self, record: SystemRecord) -> list[Finding]:
        self._seen += 1
        if self._seen <= self.patience:
            return []
        found = []
        for device, value in gpu_values(record, m.GPU_UTIL).items():
            window = self._util.setdefault(device, deque(maxlen=self.window))
            window.append(value)
            if len(window) < self.window:
                continue
            p5, p95 = _percentiles(window, 5, 95)
            window.clear()
            if p95 < self.threshold_p95:
                found.append(self.finding(record.step, record.mode, f"{device} under-used: p95 utilisation {p95:.0f}% "
                                          f"< {self.threshold_p95:g}% over {self.window} samples. Next: a larger "
                                          "batch, or look for a data loader / CPU bottleneck", (device,), p95=p95,
                                          p5=p5))
            elif p5 < self.threshold_p5:
                found.append(self.finding(record.step, record.mode, f"{device} utilisation fluctuates: p95 {p95:.0f}% "
                                          f"but p5 {p5:.0f}% < {self.threshold_p5:g}%. Next: look for host syncs, "
                                          "blocking collectives, data loader stalls", (device,), p95=p95, p5=p5))
        return found


@dataclass
class BatchSize(Rule):
    """The batch could grow: over a window, the p95 of the host's CPU, of every GPU's utilisation
    and of its memory are all below their thresholds. Silent without GPUs (a CPU-only run is
    judged by CPUBottleneck).

    Why: a small batch leaves the accelerator idle between kernels; a larger one (or a larger
    model, or fewer GPUs) uses what is paid for.
    Try: increase the batch size (scale the learning rate), or use a smaller instance.
    Defaults: SageMaker's (every threshold 70, window 500).
    """

    code = "GP203"
    default_severity = Severity.INFO
    cpu_threshold_p95: float = 70.0
    gpu_threshold_p95: float = 70.0
    gpu_memory_threshold_p95: float = 70.0
    window: int = 500
    patience: int = 100
    _seen: int = 0
    _cpu: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    _gpu: dict[str, list[float]] = field(default_factory=dict)
    _mem: dict[str, list[float]] = field(default_factory=dict)

    def on_system(self, record: SystemRecord) -> list[Finding]:
        util, memory = gpu_values(record, m.GPU_UTIL), gpu_values(record, m.GPU_MEM_UTIL)
        cpu = host_value(record, m.CPU_UTIL)
        self._seen += 1
        if not util or cpu is None or self._seen <= self.patience:
            return []
        self._cpu.append(cpu)
        for device, value in util.items():
            self._gpu.setdefault(device, []).append(value)
        for device, value in memory.items():
            self._mem.setdefault(device, []).append(value)
        if len(self._cpu) < self.window:
            return []
        cpu95 = _percentiles(self._cpu, 95)[0]
        gpu95 = max(float(np.percentile(v, 95)) for v in self._gpu.values())
        mem95 = max((float(np.percentile(v, 95)) for v in self._mem.values()), default=0.0)
        self._cpu.clear()
        self._gpu.clear()
        self._mem.clear()
        if cpu95 < self.cpu_threshold_p95 and gpu95 < self.gpu_threshold_p95 and mem95 < self.gpu_memory_threshold_p95:
            return [self.finding(record.step, record.mode, f"the batch could grow: p95 CPU {cpu95:.0f}%, GPU "
                                 f"{gpu95:.0f}%, GPU memory {mem95:.0f}% (all < 70%). Next: a larger batch, or "
                                 "fewer/smaller GPUs", ("batch",), cpu_p95=cpu95, gpu_p95=gpu95, gpu_memory_p95=mem95)]
        return []


@dataclass
class GPUMemoryIncrease(Rule):
    """Memory grows: the mean over a window of `window` samples exceeds the lowest earlier window's
    mean by more than `increase` percentage points — per GPU (gpu_mem_util_pct), or, without a GPU,
    this process's resident memory as a share of the host's (proc_rss_pct).

    Why: a leak ends in an out-of-memory crash hours into a run.
    Typical causes: keeping tensors that hold the graph (losses appended without .item() or
    .detach()), growing caches, lists of outputs kept for metrics.
    Try: .detach().cpu() or .item() what you keep; clear caches; look at the step where it starts.
    Defaults: SageMaker's (increase 5 points, window 10).
    """

    code = "GP204"
    increase: float = 5.0
    window: int = 10
    patience: int = 20
    _seen: int = 0
    _current: dict[str, list[float]] = field(default_factory=dict)
    _lowest: dict[str, float] = field(default_factory=dict)

    def on_system(self, record: SystemRecord) -> list[Finding]:
        self._seen += 1
        if self._seen <= self.patience:
            return []
        values = gpu_values(record, m.GPU_MEM_UTIL)
        if not values:
            rss = record.values.get(m.PROCESS, {}).get(m.PROC_RSS_UTIL)
            values = {} if rss is None else {m.PROCESS: rss}
        found = []
        for device, value in values.items():
            window = self._current.setdefault(device, [])
            window.append(value)
            if len(window) < self.window:
                continue
            mean = float(np.mean(window))
            window.clear()
            lowest = self._lowest.get(device)
            if lowest is None or mean < lowest:
                self._lowest[device] = mean
            elif mean - lowest > self.increase:
                self._lowest[device] = mean  # report the next growth of `increase` again
                what = "this process's memory" if device == m.PROCESS else f"{device} memory"
                found.append(self.finding(record.step, record.mode, f"{what} grew by {mean - lowest:.1f} points of "
                                          f"the total (window mean {lowest:.1f}% -> {mean:.1f}%). Next: look for "
                                          "tensors kept across steps (losses without .item(), outputs kept for "
                                          "metrics), growing caches", (device,), growth_points=mean - lowest,
                                          mean_pct=mean))
        return found


# A bounded ring of the latest samples per (node, device, metric) for the summary's percentiles.
SUMMARY_SAMPLES = 4096


@dataclass
class OverallSystemUsage(Rule):
    """Never fires: summarises every sampled metric (p50, p95, p99, min, max) per node and device
    into a `rule_summary` event at the end of the run (per-core devices are left out; the host's
    total stands for them). Percentiles cover the latest 4096 samples, min and max the whole run.

    Why: one line per metric tells whether the run used what it paid for, and is the baseline
    the other rules' findings are read against.
    Try: compare runs' summaries (events.jsonl, type rule_summary) before and after a change.
    """

    code = "GP205"
    default_severity = Severity.INFO
    _rings: dict[str, list[Any]] = field(default_factory=dict)

    def on_system(self, record: SystemRecord) -> list[Finding]:
        for device, values in record.values.items():
            if m.is_core(device):
                continue
            for metric, value in values.items():
                key = f"{record.node}/{device}/{metric}"
                entry = self._rings.get(key)
                if entry is None:
                    entry = self._rings[key] = [np.empty(SUMMARY_SAMPLES), 0, float("inf"), float("-inf")]
                ring, count = entry[0], entry[1]
                ring[count % SUMMARY_SAMPLES] = value
                entry[1] = count + 1
                entry[2], entry[3] = min(entry[2], value), max(entry[3], value)
        return []

    def summary(self) -> dict[str, Any] | None:
        if not self._rings:
            return None
        result: dict[str, Any] = {}
        for key, (ring, count, low, high) in self._rings.items():
            data = ring[:min(count, SUMMARY_SAMPLES)]
            p50, p95, p99 = (float(v) for v in np.percentile(data, (50, 95, 99)))
            result[key] = {"p50": p50, "p95": p95, "p99": p99, "min": low, "max": high, "samples": count}
        return result

    def state_dict(self) -> dict[str, Any]:
        return {}  # a summary of what was seen, not state a resumed run needs
