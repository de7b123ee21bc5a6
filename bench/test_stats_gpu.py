"""GPU statistics speed (run by bench/gpu_check.sh): device time against the device-copy floor,
host time per call, and launches per call.

Targets (H200): BERT-base float32 all statistics + histogram <= 1.2x the floor, host time per call
<= 30 us, a constant number of launches; 7B-parameter-shaped bf16 set <= 1.1x the floor.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

import gradprobe

from .naive import naive_torch_loop
from .tensor_sets import llama7b_shaped, nbytes, pretraining_gradients

pytestmark = pytest.mark.gpu


def device_ms(fn, rounds: int = 30) -> float:
    """Median device time of fn on the current stream, by CUDA events."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_floor_ms(total_bytes: int) -> tuple[float, float]:
    """Floor for reading `total_bytes` once: bytes / bandwidth of a device-to-device copy
    (counting bytes read and written). Returns (floor ms, bandwidth GB/s)."""
    n = 1 << 28  # 1 GiB of float32 each way
    src, dst = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
    ms = device_ms(lambda: dst.copy_(src), rounds=20)
    bandwidth = 2 * n * 4 / (ms * 1e-3)
    return total_bytes / bandwidth * 1e3, bandwidth / 1e9


@pytest.fixture(scope="module")
def sets():
    return {"bert_base_fp32": pretraining_gradients("bert_base", device="cuda"),
            "llama7b_bf16": llama7b_shaped("cuda")}


@pytest.mark.parametrize("name", ["bert_base_fp32", "llama7b_bf16"])
def test_gpu_stats_speed(sets, results, name):
    tensors = sets[name]
    computer = gradprobe.StatsComputer()
    floor_ms, bandwidth = copy_floor_ms(nbytes(tensors))
    label = f"{name} ({len(tensors)} tensors, {nbytes(tensors) / 1e9:.2f} GB)"
    results.add(set=label, method="device_copy_floor", ms=floor_ms, floor_ms=floor_ms, ratio=1.0,
                note=f"{bandwidth:.0f} GB/s copy")
    for hist in (False, True):
        ms = device_ms(lambda: computer.launch(tensors, None, histogram=hist, backend="cuda"))
        results.add(set=label, method=f"gradprobe_cuda{'_hist' if hist else ''}", ms=ms, floor_ms=floor_ms,
                    ratio=ms / floor_ms)
    engine = computer.backend("cuda").engine(torch.cuda.current_device())
    host = []
    for _ in range(200):
        before = engine.launches
        start = time.perf_counter()
        pending = computer.launch(tensors, None, histogram=True, backend="cuda")
        host.append(time.perf_counter() - start)
        assert engine.launches - before == 1  # one fused launch per device per call, whatever the count
        pending.result()
    results.add(set=label, method="host time per call", ms=statistics.median(host) * 1e3, floor_ms=floor_ms,
                ratio=float("nan"), note="launch only, median of 200")
    if name == "bert_base_fp32":
        ms = device_ms(lambda: naive_torch_loop(tensors), rounds=3)
        results.add(set=label, method="naive_torch_loop", ms=ms, floor_ms=floor_ms, ratio=ms / floor_ms)
        ms = device_ms(lambda: torch._foreach_norm(tensors))
        results.add(set=label, method="torch_foreach_norm", ms=ms, floor_ms=floor_ms, ratio=ms / floor_ms)
