"""Every CPU fast path this machine can take gives the reference's results: exact (scalar float64),
avx512 (float lanes, table histogram: e.g. Skylake-SP) and avx512-vbmi (vector histogram)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe import StatsComputer, _core, diff_stats, tensor_stats
from gradprobe.stats.inputs import build_table

from .data import BLOCK, CPU_CHUNK, DTYPES, planted
from .oracle import assert_stats_close, reference

PATHS = [name for name, _, _ in _core.cpu_targets()]


@pytest.fixture(params=PATHS)
def cpu_path(request):
    before = _core.cpu_path()
    try:
        _core.set_cpu_path(request.param)
    except ValueError as error:
        pytest.skip(str(error))
    yield request.param
    _core.set_cpu_path(before)


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d) for d in DTYPES])
def test_each_path_matches_reference(cpu_path, dtype, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, dtype, g) for n in (7, BLOCK + 1, 40 * BLOCK, CPU_CHUNK + 3)]
    tensors += [planted(n, dtype, g, specials=False) for n in (64 * BLOCK, 300_001)]
    assert_stats_close(tensor_stats(tensors, backend="cpu"), reference(tensors), f"{cpu_path} {dtype} seed={rng_seed}")


def test_each_path_pairs_and_fused_pass(cpu_path, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    after = [torch.randn(n, generator=g) * 0.05 for n in (1000, 100_000, 300_001)]
    before = [a - 1e-4 * torch.randn(a.shape, generator=g) for a in after]
    assert_stats_close(diff_stats(after, before, backend="cpu"), reference(after, before), cpu_path, pair=True)
    table = build_table(after, [b.clone() for b in before])
    table.a_rows, table.copy = np.arange(3, 6), np.full(3, 4)  # row of b, no copy
    got = StatsComputer().launch_table(table, histogram=True, backend="cpu").result()
    assert_stats_close(got.take(range(3, 6)), reference(before), f"{cpu_path} rows of b")


def test_unknown_or_unsupported_path_is_refused():
    with pytest.raises(ValueError, match="cpu path must be"):
        _core.set_cpu_path("sse9")
    unsupported = [name for name, supported, _ in _core.cpu_targets() if not supported]
    for name in unsupported:
        with pytest.raises(ValueError, match="this CPU cannot"):
            _core.set_cpu_path(name)
