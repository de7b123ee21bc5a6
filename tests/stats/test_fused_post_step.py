"""The CPU-only fused pass the probe uses after an optimizer step: statistics of a - b, of a alone
(a_rows), and a copied into b (copy), in one read of each array."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe import InputError, StatsComputer, diff_stats, tensor_stats
from gradprobe.stats.inputs import build_table

from .data import planted
from .oracle import assert_stats_close


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_fused_pairs_weights_and_copy_match_reference(dtype, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    after = [planted(n, dtype, g) for n in (0, 5, 1000, 70_000, 300_001)]
    before = [(a.double() - 1e-3 * torch.randn(a.shape, generator=g, dtype=torch.float64)).to(dtype) for a in after]
    want_diff = diff_stats(after, [b.clone() for b in before], backend="torch")
    want_after = tensor_stats(after, backend="torch")
    table = build_table(after, before)
    n = len(after)
    table.a_rows = np.arange(n, 2 * n)
    table.copy = np.ones(n, np.int64)
    got = StatsComputer().launch_table(table, histogram=True, backend="cpu").result()
    assert len(got) == 2 * n
    assert_stats_close(got.take(range(n)), want_diff, f"pairs {dtype} seed={rng_seed}", pair=True)
    assert_stats_close(got.take(range(n, 2 * n)), want_after, f"a rows {dtype} seed={rng_seed}")
    for a, b in zip(after, before):
        assert torch.equal(a, b) or (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())


def test_fused_pass_is_cpu_only_and_checked():
    table = build_table([torch.randn(3)], [torch.randn(3)])
    table.a_rows, table.copy = np.array([1]), np.array([1])
    with pytest.raises(RuntimeError, match="does not take a_rows/copy"):
        StatsComputer().launch_table(table, histogram=True, backend="torch")
    single = build_table([torch.randn(3)])  # a_rows without a pair
    single.a_rows, single.copy = np.array([1]), np.array([0])
    with pytest.raises(ValueError, match="a_row and copy need a pair"):
        StatsComputer().launch_table(single, histogram=True, backend="cpu")
