"""Every CPU target this build contains and this CPU supports, forced at run time, gives the float64
reference's results: exact (per-element float64), the x86 targets (sse2, sse4, avx2, avx512,
avx512-vbmi) or the aarch64 ones (neon, sve256). Targets this CPU lacks skip with the reason; the
aarch64 targets run under qemu in tests/native."""

from __future__ import annotations

import pytest
import torch

from gradprobe import StatsComputer, _core, diff_stats, tensor_stats
from gradprobe.stats.inputs import build_table
from gradprobe.stats.post_step import PostStepTable

from .data import BLOCK, CPU_CHUNK, DTYPES, planted, shapes_for
from .oracle import assert_stats_close, reference

TARGETS = [name for name, _, _ in _core.cpu_targets()]


@pytest.fixture(params=TARGETS)
def cpu_path(request):
    before = _core.cpu_path()
    try:
        _core.set_cpu_path(request.param)
    except ValueError as error:
        pytest.skip(str(error))
    yield request.param
    _core.set_cpu_path(before)


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d) for d in DTYPES])
def test_each_target_matches_reference(cpu_path, dtype, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, dtype, g) for n in shapes_for(CPU_CHUNK)]
    tensors += [planted(n, dtype, g, specials=False) for n in (BLOCK - 1, 64 * BLOCK, 300_001)]
    assert_stats_close(tensor_stats(tensors, backend="cpu"), reference(tensors), f"{cpu_path} {dtype} seed={rng_seed}")


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d) for d in DTYPES])
def test_each_target_specials_in_every_block_position(cpu_path, dtype, rng_seed):
    """One special value per tensor at every offset class of a block: first, last, middle lane, tail."""
    g = torch.Generator().manual_seed(rng_seed)
    info = torch.finfo(dtype)
    tensors = []
    for value in (float("nan"), float("inf"), -float("inf"), -0.0, info.smallest_normal / 4, info.max * 0.5):
        for where in (0, BLOCK - 1, BLOCK + 7, 3 * BLOCK + 2):
            x = (torch.randn(3 * BLOCK + 3, generator=g, dtype=torch.float64) * 1e-2).to(dtype)
            x[where] = value
            tensors.append(x)
    tensors.append(torch.full((4 * BLOCK,), 0.25, dtype=dtype))  # constant blocks sum exactly
    tensors.append((torch.randn(2 * BLOCK, generator=g, dtype=torch.float64) * 1e-30).to(dtype))  # underflow risk
    assert_stats_close(tensor_stats(tensors, backend="cpu"), reference(tensors), f"{cpu_path} {dtype} seed={rng_seed}")


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d) for d in DTYPES])
def test_each_target_histogram_of_long_constant_runs(cpu_path, dtype):
    """Every value of a block in one exponent bin, block after block: the per-lane byte counters of
    the histogram reach their limit (on 4-lane targets, 32 hits per lane per block) and must be
    flushed before they wrap."""
    tensors = [torch.full((n * BLOCK + 3,), value, dtype=dtype) for n in (7, 8, 16, 33, 70)
               for value in (1.0, -0.375)]
    tensors.append(torch.cat([torch.full((20 * BLOCK,), 2.0), torch.full((20 * BLOCK,), 0.5)]).to(dtype))
    got = tensor_stats(tensors, backend="cpu")
    assert_stats_close(got, reference(tensors), f"{cpu_path} {dtype}")
    assert (got.hist.sum(axis=1) == got.numel).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d) for d in DTYPES])
def test_each_target_blocks_whose_means_jump(cpu_path, dtype, rng_seed):
    """Each block's shift is read while the block before it is computed: blocks whose means and
    spreads jump from one block to the next, a non-finite block, and 1, 2 and 3 blocks (+ tails)."""
    g = torch.Generator().manual_seed(rng_seed)
    means = [0.0, 1e4, -3e3, 1e-3, 2e4, 0.0, -7.5, 1e2]
    spreads = [1.0, 1e-2, 10.0, 1e-4, 1.0, 1e3, 1e-1, 1.0]
    if dtype == torch.float16:
        means = [m / 16 for m in means]
    blocks = [m + s * torch.randn(BLOCK, generator=g, dtype=torch.float64) for m, s in zip(means, spreads)]
    jumping = torch.cat(blocks).to(dtype)
    with_nan = jumping.clone()
    with_nan[3 * BLOCK + 5] = float("nan")
    tensors = [jumping, with_nan, jumping[: BLOCK], jumping[BLOCK: 3 * BLOCK + 1], jumping[2 * BLOCK: 5 * BLOCK + 77]]
    assert_stats_close(tensor_stats(tensors, backend="cpu"), reference(tensors), f"{cpu_path} {dtype} seed={rng_seed}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64],
                         ids=["float32", "float16", "bfloat16", "float64"])
def test_each_target_pairs(cpu_path, dtype, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    after = [(torch.randn(n, generator=g) * 0.05).to(dtype) for n in (1, BLOCK + 1, 100_000, CPU_CHUNK + 1)]
    before = [(a.double() - 1e-3 * torch.randn(a.shape, generator=g, dtype=torch.float64)).to(dtype) for a in after]
    before[2][::7] = after[2][::7]  # unchanged weights: exact zeros of a - b
    assert_stats_close(diff_stats(after, before, backend="cpu"), reference(after, before), f"{cpu_path} {dtype}",
                       pair=True)


def test_each_target_mixed_dtype_pairs(cpu_path, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    after = [planted(n, torch.float32, g) for n in (7, 3 * BLOCK + 5, 100_003)]
    before = [a.double() + 1e-3 for a in after]
    assert_stats_close(diff_stats(after, before, backend="cpu"), reference(after, before), cpu_path, pair=True)


def test_each_target_fused_pass_rows(cpu_path, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    after = [torch.randn(n, generator=g) * 0.05 for n in (1000, 100_000, 300_001)]
    before = [a - 1e-4 * torch.randn(a.shape, generator=g) for a in after]
    assert_stats_close(diff_stats(after, before, backend="cpu"), reference(after, before), cpu_path, pair=True)
    table = PostStepTable(build_table(after, [b.clone() for b in before]), build_table([]), refresh_snapshot=False,
                          snapshot_histogram=True)
    got = StatsComputer().launch_post_step(table, histogram=True).result()
    assert_stats_close(got.take(range(3, 6)), reference(before), f"{cpu_path} rows of b")


def test_each_target_histogram_wide_exponent_span(cpu_path, rng_seed):
    """Blocks whose exponents span more fields than the byte histogram counts take the tables."""
    g = torch.Generator().manual_seed(rng_seed)
    x = torch.randn(8 * BLOCK, generator=g) * torch.pow(2.0, torch.randint(-120, 120, (8 * BLOCK,), generator=g).float())
    y = torch.randn(8 * BLOCK, generator=g) * torch.pow(2.0, torch.randint(-20, 20, (8 * BLOCK,), generator=g).float())
    got = tensor_stats([x, y], backend="cpu")
    want = reference([x, y])
    assert (got.hist == want.hist).all(), cpu_path
    assert_stats_close(got, want, cpu_path)


def test_targets_are_listed_with_support_and_reason():
    targets = _core.cpu_targets()
    assert targets[0][0] == "exact" and targets[0][1]
    assert _core.best_cpu_path() in [name for name, ok, _ in targets if ok]
    assert _core.best_cpu_path() in _core.cpu_path_reason()


def test_unknown_or_unsupported_target_is_refused():
    before = _core.cpu_path()  # the best target, or the one GRADPROBE_CPU_TARGET chose
    with pytest.raises(ValueError, match="cpu path must be one of"):
        _core.set_cpu_path("sse9")
    for name, supported, _needs in _core.cpu_targets():
        if not supported:
            with pytest.raises(ValueError, match="this CPU cannot"):
                _core.set_cpu_path(name)
    assert _core.cpu_path() == before  # a refused request changes nothing
