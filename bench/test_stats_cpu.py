"""CPU statistics speed on BERT-shaped gradient sets, against the read floor and the naive loop.

Targets (2-core reference machine): all statistics without histogram <= 1.3x the floor, with the
histogram <= 2x, and >= 25x faster than the naive per-tensor loop on BERT-base.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradprobe
from gradprobe import _core

from .conftest import interleaved
from .naive import naive_torch_loop
from .tensor_sets import nbytes, pretraining_gradients

SETS = ["bert_base", "minilm"]


@pytest.fixture(scope="session")
def tensor_sets():
    return {name: pretraining_gradients(name) for name in SETS}


def read_floor(tensors):
    """Reads every byte once as fast as the memory allows (one AVX-512 sum per tensor, all cores)."""
    for t in tensors:
        _core.read_floor_sum(t.data_ptr(), t.numel(), 0)


def on_path(path, fn):
    """Runs fn on a forced CPU path (what CPUs without some AVX-512 extensions take)."""
    def run(ts):
        before = _core.cpu_path()
        _core.set_cpu_path(path)
        try:
            return fn(ts)
        finally:
            _core.set_cpu_path(before)
    return run


METHODS = {
    "read_floor": read_floor,
    "gradprobe_cpu": lambda ts: gradprobe.tensor_stats(ts, histogram=False, backend="cpu"),
    "gradprobe_cpu_hist": lambda ts: gradprobe.tensor_stats(ts, histogram=True, backend="cpu"),
    # AVX-512 without VBMI/BITALG/GFNI (Skylake-SP, Cascade Lake): table histogram.
    "gradprobe_cpu_hist[avx512 without vbmi]": on_path("avx512", lambda ts: gradprobe.tensor_stats(ts, histogram=True)),
    "naive_torch_loop": naive_torch_loop,
    "torch_foreach_norm": lambda ts: torch._foreach_norm(ts),
}


def test_bench_sets_are_computed_correctly(tensor_sets):
    for name, tensors in tensor_sets.items():
        got = gradprobe.tensor_stats(tensors)
        want = gradprobe.tensor_stats(tensors, backend="torch")
        assert (got.hist == want.hist).all() and (got.zeros == want.zeros).all(), name
        np.testing.assert_allclose(got.l2, want.l2, rtol=2e-6)


@pytest.mark.parametrize("tensor_set", SETS)
@pytest.mark.parametrize("method", list(METHODS))
def test_cpu_stats_speed(benchmark, tensor_sets, results, tensor_set, method):
    tensors = tensor_sets[tensor_set]
    fn = METHODS[method]
    rounds = 3 if method == "naive_torch_loop" else 21
    ms, floor, ratio = interleaved(fn, read_floor, (tensors,), rounds)
    benchmark.extra_info.update(ratio_to_floor=ratio, floor_ms=floor * 1e3, tensors=len(tensors),
                                bytes=nbytes(tensors))
    benchmark.pedantic(fn, args=(tensors,), rounds=rounds, iterations=1, warmup_rounds=1)
    results.add(set=f"{tensor_set} ({len(tensors)} tensors, {nbytes(tensors) / 1e6:.0f} MB fp32)", method=method,
                ms=ms * 1e3, floor_ms=floor * 1e3, ratio=ratio,
                note=f"{nbytes(tensors) / floor / 1e9:.1f} GB/s floor" if method == "read_floor" else "")
