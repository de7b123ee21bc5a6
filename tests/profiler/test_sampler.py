"""The system sampler against psutil and planted traffic; the no-GPU path; configuration checks."""

from __future__ import annotations

import logging
import socket
import threading
import time

import psutil
import pytest
import torch

from gradprobe import ProbeConfig, metrics
from gradprobe.profiler import ProfilerConfig
from gradprobe.profiler.nvml import GpuReader, pci_bus_id
from gradprobe.profiler.sampler import SystemSampler
from gradprobe.store.config import ConfigError

from .helpers import train


def _send_over_loopback(nbytes: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        received = []

        def drain() -> None:
            connection, _ = server.accept()
            with connection:
                while chunk := connection.recv(1 << 20):
                    received.append(len(chunk))

        reader = threading.Thread(target=drain)
        reader.start()
        with socket.create_connection(server.getsockname()) as client:
            client.sendall(b"x" * nbytes)
        reader.join()
    assert sum(received) == nbytes


def test_sampler_reads_host_process_and_network_and_says_the_gpu_is_unavailable():
    started = time.monotonic()
    sampler = SystemSampler()
    assert "gpu" in sampler.unavailable  # no bus ids: nothing to read
    _send_over_loopback(50_000_000)
    rss_before = psutil.Process().memory_info().rss
    values = sampler.sample()
    rss_after = psutil.Process().memory_info().rss  # the process's RSS moves (other threads free memory)
    elapsed = time.monotonic() - started  # holds the sampler's own interval
    host, process = values[metrics.HOST], values[metrics.PROCESS]
    assert set(metrics.HOST_METRICS) - {metrics.CPU_IOWAIT} <= set(host)
    assert set(metrics.PROCESS_METRICS) == set(process)
    # Loopback traffic is counted once sent and once received; other traffic can only add to it.
    assert host[metrics.NET_SENT] * elapsed >= 50_000_000
    assert host[metrics.NET_RECV] * elapsed >= 50_000_000
    cores = [d for d in values if metrics.is_core(d)]
    assert len(cores) == psutil.cpu_count()
    for device in cores + [metrics.HOST]:
        assert 0.0 <= values[device][metrics.CPU_UTIL] <= 100.0
    assert 0.95 * min(rss_before, rss_after) <= process[metrics.PROC_RSS] <= 1.05 * max(rss_before, rss_after)
    assert process[metrics.PROC_RSS_UTIL] == pytest.approx(100 * process[metrics.PROC_RSS] / psutil.virtual_memory().total)
    assert abs(host[metrics.MEM_UTIL] - psutil.virtual_memory().percent) < 10
    assert not any(metrics.is_gpu(d) for d in values)


def test_sampler_counts_its_process_cpu_time():
    sampler = SystemSampler()
    started = time.process_time()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass
    busy = time.process_time() - started
    values = sampler.sample()
    # percent of one core over the interval; the interval holds at least the busy loop
    assert values[metrics.PROCESS][metrics.PROC_CPU] > 0.5 * 100 * busy / 0.4


def test_gpu_reader_without_nvml_or_gpu_records_why():
    reader = GpuReader([pci_bus_id(0, 0x17, 0)])
    if reader.devices:  # pragma: no cover - a GPU machine: the reader found it by bus id
        pytest.skip("NVML found a GPU at that bus id")
    assert "gpu" in reader.unavailable or any(k.startswith("gpu ") for k in reader.unavailable)
    assert reader.read() == {}
    assert pci_bus_id(1, 0x3B, 2) == "00000001:3b:02.0"


def test_a_cpu_run_records_cpu_memory_disk_network_and_says_once_that_gpu_metrics_are_unavailable(tmp_path, caplog):
    batches = [(torch.randn(8, 16), torch.randn(8, 1)) for _ in range(4)]
    with caplog.at_level(logging.INFO, logger="gradprobe.profiler"):
        _, run = train(tmp_path / "run", batches, rules=[], each_step=lambda step: time.sleep(0.15))
    said = [r for r in caplog.records if "system sampler cannot read" in r.getMessage()]
    assert len(said) == 1 and "gpu (the model is not on a CUDA device)" in said[0].getMessage()
    assert "gpu" in run.meta["profiler"]["unavailable"]
    assert [e["profiler"]["unavailable"] for e in run.events("start")] == [run.meta["profiler"]["unavailable"]]
    system = run.system()
    assert {"time", "node", "rank", "device", "metric", "value"} <= set(system.columns)
    recorded = set(system["metric"])
    for metric in (metrics.CPU_UTIL, metrics.MEM_USED, metrics.DISK_READ, metrics.DISK_WRITE, metrics.NET_SENT,
                   metrics.NET_RECV, metrics.PROC_CPU, metrics.PROC_RSS):
        assert metric in recorded, metric
    assert not recorded & set(metrics.GPU_METRICS)
    assert system.groupby(["device", "metric"]).size().min() >= 3  # several samples of each


@pytest.mark.parametrize("interval", [0.05, 61.0, 0])
def test_sampler_interval_outside_100ms_to_60s_is_refused(interval):
    with pytest.raises(ConfigError, match="system_interval"):
        ProfilerConfig(system_interval=interval)


def test_profiler_config_from_a_mapping_is_checked():
    config = ProbeConfig.from_dict({"profiler": {"system_interval": 1, "profile_steps": [2, 4]}})
    assert config.profiler.profile_steps == (2, 4) and config.profiler.system_interval == 1
    assert config.to_dict()["profiler"]["profile_steps"] == [2, 4]
    assert ProbeConfig.from_preset("minimal").profiler.system_interval is None
    assert ProbeConfig.from_preset("full").profiler.system_interval == 0.5
    assert ProbeConfig().profiler.system_interval == 0.5
    with pytest.raises(ConfigError, match="unknown key 'interval'"):
        ProbeConfig.from_dict({"profiler": {"interval": 1}})
    with pytest.raises(ConfigError, match="profile_steps"):
        ProbeConfig.from_dict({"profiler": {"profile_steps": [4, 2]}})
    with pytest.raises(ConfigError, match="phases"):
        ProbeConfig.from_dict({"profiler": {"phases": "yes"}})


def test_utilisation_is_kept_within_0_and_100_percent():
    from gradprobe.profiler.sampler import _percent

    assert (_percent(-1e-12, 1.0), _percent(1.0 + 1e-9, 1.0), _percent(0.25, 1.0)) == (0.0, 100.0, 25.0)
