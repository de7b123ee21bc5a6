"""GPU metrics through NVML (the `pynvml` module of nvidia-ml-py), for the GPUs this process uses.

Torch devices are matched to NVML devices by PCI bus id, or UUID where torch does not report the
bus (CUDA_VISIBLE_DEVICES renumbers torch's indices, never these); the `device` label is
"gpu<NVML index>". Each metric a GPU does not support is dropped after its first failure and
named in `unavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import metrics as m

try:  # optional: nvidia-ml-py; without it the sampler records no GPU metrics and says so
    import pynvml
except ImportError:  # pragma: no cover - depends on the environment
    pynvml = None

# NVML reports PCIe throughput in KiB/s and power in mW.
_KIB, _MILLI = 1024.0, 1e-3


def _readers() -> dict[str, Callable[[Any], float]]:
    nv = pynvml
    return {
        m.GPU_UTIL: lambda h: float(nv.nvmlDeviceGetUtilizationRates(h).gpu),
        m.GPU_MEM_USED: lambda h: float(nv.nvmlDeviceGetMemoryInfo(h).used),
        m.GPU_MEM_UTIL: lambda h: _memory_pct(nv.nvmlDeviceGetMemoryInfo(h)),
        m.GPU_POWER: lambda h: nv.nvmlDeviceGetPowerUsage(h) * _MILLI,
        m.GPU_TEMP: lambda h: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
        m.GPU_SM_CLOCK: lambda h: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
        # Each PCIe reading samples the bus for ~20 ms: fine on the sampler thread.
        m.GPU_PCIE_TX: lambda h: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) * _KIB,
        m.GPU_PCIE_RX: lambda h: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES) * _KIB,
    }


def _memory_pct(info: Any) -> float:
    return 100.0 * info.used / info.total if info.total else 0.0


def pci_bus_id(domain: int, bus: int, device: int) -> str:
    """The bus id as NVML spells it (nvmlDeviceGetHandleByPciBusId accepts this form)."""
    return f"{domain:08x}:{bus:02x}:{device:02x}.0"


class GpuReader:
    """Reads the GPUs given as PCI bus ids (or "GPU-<uuid>"); `devices` maps each found GPU's
    label to its handle."""

    def __init__(self, bus_ids: Iterable[str]) -> None:
        self.devices: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}  # what could not be read -> why
        self._broken: set[tuple[str, str]] = set()
        bus_ids = list(bus_ids)
        if not bus_ids:
            self.unavailable["gpu"] = "the model is not on a CUDA device"
            return
        if pynvml is None:
            self.unavailable["gpu"] = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
        except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.unavailable["gpu"] = f"NVML could not start: {error}"
            return
        self._readers = _readers()
        for bus_id in bus_ids:
            try:
                handle = (pynvml.nvmlDeviceGetHandleByUUID(bus_id) if bus_id.startswith("GPU-")
                          else pynvml.nvmlDeviceGetHandleByPciBusId(bus_id))
                index = pynvml.nvmlDeviceGetIndex(handle)
            except Exception as error:
                self.unavailable[f"gpu {bus_id}"] = f"NVML does not know this device: {error}"
                continue
            self.devices[m.gpu_device(index)] = handle

    def read(self) -> dict[str, dict[str, float]]:
        values: dict[str, dict[str, float]] = {}
        for device, handle in self.devices.items():
            row = values[device] = {}
            for metric, reader in self._readers.items():
                if (device, metric) in self._broken:
                    continue
                try:
                    row[metric] = reader(handle)
                except Exception as error:  # NotSupported on this GPU or driver: drop the metric
                    self._broken.add((device, metric))
                    self.unavailable[f"{device}/{metric}"] = f"{type(error).__name__}: {error}"
        return values

    def close(self) -> None:
        if self.devices:
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass
