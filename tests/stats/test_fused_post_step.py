"""The CPU-only fused post-step operation (StatsComputer.launch_post_step): statistics of each
pair a - b, of the singles, of each b alone (read before the refresh), and b refreshed with a,
in one read of each array."""

from __future__ import annotations

import pytest
import torch

from gradprobe import InputError, StatsComputer, diff_stats, tensor_stats
from gradprobe.stats.inputs import build_table
from gradprobe.stats.post_step import PostStepTable

from .data import planted
from .oracle import assert_stats_close


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("refresh", [True, False])
def test_pairs_singles_snapshots_and_refresh_match_reference(dtype, refresh, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    after = [planted(n, dtype, g) for n in (0, 5, 1000, 70_000, 300_001)]
    before = [(a.double() - 1e-3 * torch.randn(a.shape, generator=g, dtype=torch.float64)).to(dtype) for a in after]
    frozen = [planted(n, dtype, g) for n in (3, 200_000)]
    original_before = [b.clone() for b in before]
    want_diff = diff_stats(after, original_before, backend="torch")
    want_before = tensor_stats(original_before, backend="torch")
    want_frozen = tensor_stats(frozen, backend="torch")
    k, s = len(after), len(frozen)
    table = PostStepTable(build_table(after, before), build_table(frozen), refresh_snapshot=refresh,
                          snapshot_histogram=True)
    got = StatsComputer().launch_post_step(table, histogram=True).result()
    assert len(got) == table.output_rows == 2 * k + s
    assert_stats_close(got.take(range(k)), want_diff, f"pairs {dtype} seed={rng_seed}", pair=True)
    assert_stats_close(got.take(range(k, k + s)), want_frozen, f"singles {dtype} seed={rng_seed}")
    assert_stats_close(got.take(range(k + s, 2 * k + s)), want_before, f"snapshots {dtype} seed={rng_seed}")
    expected = after if refresh else original_before
    for b, want in zip(before, expected):
        assert torch.equal(b.nan_to_num(), want.nan_to_num()) and torch.equal(b.isnan(), want.isnan())


def test_snapshot_rows_without_histogram_keep_zero_counts(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    after = [torch.randn(1000, generator=g)]
    before = [after[0] - 0.01]
    table = PostStepTable(build_table(after, before), build_table([]), refresh_snapshot=False,
                          snapshot_histogram=False)
    got = StatsComputer().launch_post_step(table, histogram=True).result()
    assert got.hist[0].sum() == 1000 and got.hist[1].sum() == 0  # the pair's counts, none for the snapshot
    assert got.l2[1] == pytest.approx(float(torch.linalg.vector_norm(before[0].double())), rel=1e-6)


def test_post_step_is_a_cpu_operation_with_checked_inputs():
    pairs = build_table([torch.randn(3)], [torch.randn(3)])
    table = PostStepTable(pairs, build_table([]), refresh_snapshot=True, snapshot_histogram=True)
    with pytest.raises(ValueError, match="CPU operation"):
        StatsComputer().launch_post_step(table, histogram=True, backend="torch")
    with pytest.raises(InputError, match="needs its snapshot"):
        PostStepTable(build_table([torch.randn(3)]), build_table([]), refresh_snapshot=True, snapshot_histogram=True)
    on_gpu = build_table([torch.randn(3)], [torch.randn(3)])
    on_gpu.device_codes[:] = 0  # as if on cuda:0
    with pytest.raises(InputError, match="host memory only"):
        PostStepTable(on_gpu, build_table([]), refresh_snapshot=True, snapshot_histogram=True)
