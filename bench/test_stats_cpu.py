"""CPU statistics speed on BERT-shaped gradient sets, against the read floor and the naive loop.

Targets (2-core reference machine, every x86 CPU target from avx2 up, BERT-base float32): all
statistics without histogram <= 1.3x the floor, with the histogram <= 2x, >= 25x faster than the
naive per-tensor loop; bfloat16 <= 1.5x; float64 input and one NaN per tensor <= 3x. The floor
reads the case's own bytes (a bfloat16 set has half the bytes of its float32 set).
`test_cpu_target_speed` runs every case on every target this CPU supports (forced at run time);
`bash bench/run_cpu.sh` prints them as one target x case table.
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
    """Reads every byte once as fast as the memory allows: the best CPU target's sum on all cores, in
    one parallel region split into the statistics pass's chunks (no per-tensor call overhead)."""
    _core.read_floor_many([t.data_ptr() for t in tensors], [t.numel() * t.element_size() // 4 for t in tensors], 0)


def on_path(path, fn):
    """Runs fn on a forced CPU target (what a CPU without the best one's extensions takes)."""
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


# Every CPU target this CPU supports from the baseline up (exact, the per-element reference, is
# the naive loop's order of cost and is left out).
TARGETS = [name for name, supported, _ in _core.cpu_targets() if supported and name != "exact"]


def with_nan(tensors):
    out = [t.clone() for t in tensors]
    for t in out:
        t.view(-1)[t.numel() // 2] = float("nan")
    return out


# case -> (derive the inputs from the float32 set, histogram)
CASES = {
    "f32": (lambda ts: ts, False),
    "f32_hist": (lambda ts: ts, True),
    "bf16": (lambda ts: [t.to(torch.bfloat16) for t in ts], False),
    "bf16_hist": (lambda ts: [t.to(torch.bfloat16) for t in ts], True),
    "f64": (lambda ts: [t.double() for t in ts], False),
    "one_nan": (with_nan, False),
    "one_nan_hist": (with_nan, True),
}


@pytest.fixture(scope="session")
def case_inputs(tensor_sets):
    cache = {}

    def get(tensor_set, case):
        key = (tensor_set, case)
        if key not in cache:
            cache[key] = CASES[case][0](tensor_sets[tensor_set])
        return cache[key]

    return get


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("tensor_set", SETS)
def test_cpu_target_speed(benchmark, case_inputs, results, tensor_set, target, case):
    tensors = case_inputs(tensor_set, case)
    histogram = CASES[case][1]
    fn = on_path(target, lambda ts: gradprobe.tensor_stats(ts, histogram=histogram, backend="cpu"))
    ms, floor, ratio = interleaved(fn, read_floor, (tensors,), 11)
    benchmark.extra_info.update(target=target, case=case, set=tensor_set, ratio_to_floor=ratio,
                                floor_ms=floor * 1e3, bytes=nbytes(tensors))
    benchmark.pedantic(fn, args=(tensors,), rounds=3, iterations=1, warmup_rounds=0)
    results.add(set=f"{tensor_set} [{target}]", method=case, ms=ms * 1e3, floor_ms=floor * 1e3, ratio=ratio, note="")
