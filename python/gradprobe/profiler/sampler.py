"""System samples: host CPU (total, per core, I/O wait), memory, disk and network rates, this
process's CPU and memory (psutil), and the GPUs this process uses (nvml.py).

One read of /proc/stat per sample gives every core's utilisation and the I/O wait; rates are
deltas between consecutive samples. What a platform cannot report is left out of the samples and
named once in `unavailable` (the profiler writes it to meta.json and warns).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import psutil

from .. import metrics as m
from .nvml import GpuReader

Values = dict[str, dict[str, float]]


def _busy_and_total(times: Any) -> tuple[float, float, float]:
    """(busy, iowait, total) seconds of one cpu_times() entry; busy excludes idle and I/O wait."""
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, getattr(times, "iowait", 0.0), total


class SystemSampler:
    def __init__(self, gpu_bus_ids: Iterable[str] = ()) -> None:
        self.unavailable: dict[str, str] = {}
        self._process = psutil.Process()
        self._gpus = GpuReader(gpu_bus_ids)
        self.unavailable.update(self._gpus.unavailable)
        if not hasattr(psutil.cpu_times(), "iowait"):
            self.unavailable[m.CPU_IOWAIT] = "this platform does not report I/O wait"
        self._last_time = time.monotonic()
        self._last_cores = psutil.cpu_times(percpu=True)
        self._last_disk = self._counters(psutil.disk_io_counters, "disk")
        self._last_net = self._counters(psutil.net_io_counters, "network")
        self._process.cpu_percent()  # the first call only starts the process's CPU clock

    def _counters(self, read: Any, what: str) -> Any:
        try:
            counters = read()
        except (OSError, RuntimeError) as error:
            counters = None
            self.unavailable[what] = f"psutil could not read {what} counters: {error}"
        if counters is None and what not in self.unavailable:
            self.unavailable[what] = f"no {what} counters on this machine (psutil returned None)"
        return counters

    def sample(self) -> Values:
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-6)
        self._last_time = now
        values: Values = {m.HOST: {}, m.PROCESS: {}}
        host = values[m.HOST]
        cores = psutil.cpu_times(percpu=True)
        busy_sum = iowait_sum = total_sum = 0.0
        for index, (before, after) in enumerate(zip(self._last_cores, cores)):
            b0, w0, t0 = _busy_and_total(before)
            b1, w1, t1 = _busy_and_total(after)
            span = t1 - t0
            if span > 0:
                values[m.core_device(index)] = {m.CPU_UTIL: _percent(b1 - b0, span)}
            busy_sum, iowait_sum, total_sum = busy_sum + b1 - b0, iowait_sum + w1 - w0, total_sum + span
        self._last_cores = cores
        if total_sum > 0:
            host[m.CPU_UTIL] = _percent(busy_sum, total_sum)
            if m.CPU_IOWAIT not in self.unavailable:
                host[m.CPU_IOWAIT] = _percent(iowait_sum, total_sum)
        memory = psutil.virtual_memory()
        host[m.MEM_USED] = float(memory.total - memory.available)
        host[m.MEM_UTIL] = float(memory.percent)
        disk = psutil.disk_io_counters() if self._last_disk is not None else None
        if disk is not None:
            host[m.DISK_READ] = (disk.read_bytes - self._last_disk.read_bytes) / elapsed
            host[m.DISK_WRITE] = (disk.write_bytes - self._last_disk.write_bytes) / elapsed
            self._last_disk = disk
        net = psutil.net_io_counters() if self._last_net is not None else None
        if net is not None:
            host[m.NET_SENT] = (net.bytes_sent - self._last_net.bytes_sent) / elapsed
            host[m.NET_RECV] = (net.bytes_recv - self._last_net.bytes_recv) / elapsed
            self._last_net = net
        process = values[m.PROCESS]
        with self._process.oneshot():
            process[m.PROC_CPU] = self._process.cpu_percent()
            rss = float(self._process.memory_info().rss)
        process[m.PROC_RSS] = rss
        process[m.PROC_RSS_UTIL] = 100.0 * rss / memory.total
        values.update(self._gpus.read())
        for key, reason in self._gpus.unavailable.items():
            self.unavailable.setdefault(key, reason)
        return values

    @property
    def gpu_devices(self) -> list[str]:
        return list(self._gpus.devices)

    def close(self) -> None:
        self._gpus.close()


def _percent(part: float, whole: float) -> float:
    """100 * part / whole within [0, 100]: the kernel's tick counters are read as float sums, whose
    differences can land a rounding error outside the range (-6e-9 % was seen)."""
    return min(100.0, max(0.0, 100.0 * part / whole))
