"""Names of the system metrics the profiler samples (the `metric` column of the `system` table).

A leaf: the sampler writes these names, the rules read them, the report plots them. The unit is
in the name: _pct (percent, 0-100; proc_cpu_pct is percent of one core, so 200 = two cores busy),
_bytes, _Bps (bytes per second), _W, _C, _MHz. The `device` column says whose value it is:
"host" (machine-wide), "process" (this process), "cpu<i>" (one core), "gpu<i>" (NVML index).
"""

from __future__ import annotations

HOST = "host"
PROCESS = "process"

# host
CPU_UTIL = "cpu_util_pct"  # also per core, device "cpu<i>"
CPU_IOWAIT = "cpu_iowait_pct"
MEM_USED = "mem_used_bytes"
MEM_UTIL = "mem_util_pct"
DISK_READ = "disk_read_Bps"
DISK_WRITE = "disk_write_Bps"
NET_SENT = "net_sent_Bps"
NET_RECV = "net_recv_Bps"
# process
PROC_CPU = "proc_cpu_pct"
PROC_RSS = "proc_rss_bytes"
PROC_RSS_UTIL = "proc_rss_pct"  # RSS as a percent of the host's memory
# per GPU
GPU_UTIL = "gpu_util_pct"
GPU_MEM_USED = "gpu_mem_used_bytes"
GPU_MEM_UTIL = "gpu_mem_util_pct"
GPU_POWER = "gpu_power_W"
GPU_TEMP = "gpu_temp_C"
GPU_SM_CLOCK = "gpu_sm_clock_MHz"
GPU_PCIE_TX = "gpu_pcie_tx_Bps"
GPU_PCIE_RX = "gpu_pcie_rx_Bps"

HOST_METRICS: tuple[str, ...] = (CPU_UTIL, CPU_IOWAIT, MEM_USED, MEM_UTIL, DISK_READ, DISK_WRITE, NET_SENT, NET_RECV)
PROCESS_METRICS: tuple[str, ...] = (PROC_CPU, PROC_RSS, PROC_RSS_UTIL)
GPU_METRICS: tuple[str, ...] = (GPU_UTIL, GPU_MEM_USED, GPU_MEM_UTIL, GPU_POWER, GPU_TEMP, GPU_SM_CLOCK, GPU_PCIE_TX,
                                GPU_PCIE_RX)
ALL_METRICS: tuple[str, ...] = HOST_METRICS + PROCESS_METRICS + GPU_METRICS


def core_device(index: int) -> str:
    return f"cpu{index}"


def gpu_device(index: int) -> str:
    return f"gpu{index}"


def is_core(device: str) -> bool:
    return device.startswith("cpu") and device[3:].isdigit()


def is_gpu(device: str) -> bool:
    return device.startswith("gpu") and device[3:].isdigit()
