"""Every backend against the float64 torch reference, over dtypes x shapes with planted specials."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradprobe
from gradprobe import diff_stats, tensor_stats

from .data import BLOCK, CPU_CHUNK, DTYPES, planted, shapes_for
from .oracle import assert_stats_close, reference

DTYPE_IDS = [str(d).replace("torch.", "") for d in DTYPES]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cpu_matches_reference_over_shapes(dtype, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, dtype, g) for n in shapes_for(CPU_CHUNK)]
    got = tensor_stats(tensors, backend="cpu")
    assert_stats_close(got, reference(tensors), f"cpu {dtype} seed={rng_seed}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cpu_clean_data_takes_fast_path_and_matches(dtype, rng_seed):
    # Without specials every block is eligible for the vector path; results must still be exact where promised.
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, dtype, g, specials=False) for n in (BLOCK * 64, CPU_CHUNK + 3 * BLOCK, 700_001)]
    assert_stats_close(tensor_stats(tensors), reference(tensors), f"{dtype} seed={rng_seed}")


def test_thousands_of_tiny_tensors(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    sizes = torch.randint(0, 40, (3000,), generator=g).tolist()
    tensors = [planted(n, torch.float32, g) for n in sizes]
    assert_stats_close(tensor_stats(tensors), reference(tensors), f"tiny seed={rng_seed}")


def test_mixed_dtypes_and_sizes_in_one_call(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, DTYPES[i % 4], g) for i, n in enumerate([5, 70_000, 300_000, 1, 0, 2_000_000, 17])]
    assert_stats_close(tensor_stats(tensors), reference(tensors), f"mixed seed={rng_seed}")


def test_input_order_is_preserved_across_groups(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, torch.float32, g) for n in (10, 600_000, 3, 300_000)]
    got = tensor_stats(tensors)
    for i, t in enumerate(tensors):
        single = tensor_stats([t])
        assert got.numel[i] == single.numel[0]
        assert got.l1[i] == single.l1[0]


def test_large_offset_keeps_variance():
    # 1e4 + N(0,1): a plain float32 sum of squares loses the variance entirely.
    g = torch.Generator().manual_seed(7)
    x = (1e4 + torch.randn(3_000_000, generator=g, dtype=torch.float64)).to(torch.float32)
    got = tensor_stats([x])
    want = x.double().std(correction=0).item()
    assert abs(got.std[0] - want) <= 1e-6 * want
    assert abs(got.mean[0] - x.double().mean().item()) <= 1e-9 * 1e4


def test_layernorm_like_weights_are_accurate():
    g = torch.Generator().manual_seed(3)
    x = 1.0 + 0.01 * torch.randn(768 * 400, generator=g)
    got = tensor_stats([x])
    assert abs(got.std[0] - x.double().std(correction=0).item()) <= 1e-6 * got.std[0]
    assert abs(got.l2[0] - x.double().norm().item()) <= 1e-7 * got.l2[0]


@pytest.mark.parametrize("value", [1e-30, 3e-39, -2e-20])
def test_all_tiny_values_keep_precision(value):
    # Float lanes would underflow here; the kernel must notice and take the exact path.
    g = torch.Generator().manual_seed(11)
    x = (value * (1 + 0.5 * torch.rand(BLOCK * 8, generator=g, dtype=torch.float64))).to(torch.float32)
    assert_stats_close(tensor_stats([x]), reference([x]), f"tiny {value}")


def test_huge_values_do_not_overflow_sums():
    x = torch.tensor([3e38, -3e38, 1e30, 2.5] * 300, dtype=torch.float32)
    assert_stats_close(tensor_stats([x]), reference([x]), "huge")


def _scaled_moments(x: torch.Tensor) -> tuple[float, float, float]:
    """l2, std, mean of float64 data beyond 1e154, in float64 after an exact scaling by 2^-700."""
    y = x.double() * 2.0**-700
    return tuple(float(v) * 2.0**700 for v in (y.norm(), y.std(unbiased=False), y.mean()))


@pytest.mark.parametrize("backend", ["cpu"])
def test_float64_beyond_1e154_reports_true_moments_not_an_overflow(backend, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [torch.full((1000,), 1e200, dtype=torch.float64),
               torch.randn(1000, dtype=torch.float64, generator=g) * 1e200,
               torch.full((CPU_CHUNK + 7,), 1e154, dtype=torch.float64) + torch.randn(CPU_CHUNK + 7, dtype=torch.float64, generator=g) * 1e150,
               torch.randn(3 * CPU_CHUNK, dtype=torch.float64, generator=g)[::2] * 1e300,  # strided, several chunks
               torch.tensor([1e300, float("nan"), -1e300, float("inf"), 3.0], dtype=torch.float64)]
    got = tensor_stats(tensors, backend=backend)
    want = reference(tensors)
    for i, x in enumerate(tensors):
        finite = x[torch.isfinite(x)]
        l2, std, mean = _scaled_moments(finite)
        assert got.l2[i] == pytest.approx(l2, rel=1e-12), i
        assert got.std[i] == pytest.approx(std, rel=1e-12, abs=1e-12 * l2 / len(finite) ** 0.5), i
        assert got.mean[i] == pytest.approx(mean, rel=1e-12, abs=1e-12 * l2 / len(finite) ** 0.5), i
    for name in ("numel", "finite", "nans", "infs", "zeros", "min", "max"):  # kept from the fused pass
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.l1, want.l1, rtol=1e-12)
    np.testing.assert_array_equal(got.hist, want.hist)
    a = torch.randn(5000, dtype=torch.float64, generator=g) * 1e250
    b = torch.randn(5000, dtype=torch.float64, generator=g) * 1e250
    pair = diff_stats([a], [b], backend=backend)
    l2, std, mean = _scaled_moments(a - b)
    assert (pair.l2[0], pair.std[0]) == (pytest.approx(l2, rel=1e-12), pytest.approx(std, rel=1e-12))


def test_float64_moments_beyond_the_float64_range_read_inf():
    x = torch.tensor([1.5e308, -1.5e308] * 500, dtype=torch.float64)  # true l2 ~ 4.7e309
    got = tensor_stats([x])
    assert got.l2[0] == float("inf")
    assert got.std[0] == pytest.approx(1.5e308, rel=1e-12) and abs(got.mean[0]) < 1e-12 * 1.5e308


def test_constant_and_zero_blocks():
    tensors = [torch.zeros(BLOCK * 20), torch.ones(BLOCK * 20), torch.full((BLOCK * 20,), -0.0),
               torch.full((BLOCK * 3,), 1e-40)]
    assert_stats_close(tensor_stats(tensors), reference(tensors), "constant")


def test_sparse_like_gradient_rows():
    x = torch.zeros(30_000, 64)
    x[torch.randint(0, 30_000, (200,))] = torch.randn(200, 64)
    assert_stats_close(tensor_stats([x]), reference([x]), "sparse rows")


def test_no_finite_value_gives_nan_moments_and_zero_norms():
    x = torch.tensor([float("nan"), float("inf"), float("-inf")] * 400)
    s = tensor_stats([x, torch.empty(0)])
    for i in range(2):
        assert s.l1[i] == 0 and s.l2[i] == 0 and s.finite[i] == 0
        assert np.isnan(s.min[i]) and np.isnan(s.max[i]) and np.isnan(s.mean[i]) and np.isnan(s.std[i])
    assert s.nans[0] == 400 and s.infs[0] == 800 and s.numel[1] == 0


def test_non_contiguous_inputs(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    base = planted(600 * 700, torch.float32, g).reshape(600, 700)
    tensors = [base.T, base[:, ::3], base[::2], base.reshape(600, 7, 100).permute(2, 0, 1),
               torch.randn(1, 5, generator=g).expand(400, 5)]
    assert_stats_close(tensor_stats(tensors), reference(tensors), f"strided seed={rng_seed}")


def test_numpy_and_dlpack_inputs(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    t = planted(100_000, torch.float32, g)

    class DLPackOnly:
        def __init__(self, tensor):
            self._t = tensor

        def __dlpack__(self, **kwargs):
            return self._t.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._t.__dlpack_device__()

    arrays = [t.numpy(), t.numpy().astype(np.float16), t.numpy().astype(np.float64)[::2], DLPackOnly(t)]
    want = reference([t, t.half(), t.double()[::2], t])
    assert_stats_close(tensor_stats(arrays), want, f"numpy seed={rng_seed}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_diff_stats_matches_reference(dtype, rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    a = [planted(n, dtype, g) for n in (0, 1, 1000, CPU_CHUNK + 1)]
    b = [(x.double() + 1e-3 * torch.randn(x.shape, generator=g, dtype=torch.float64)).to(dtype) for x in a]
    got = diff_stats(a, b)
    assert_stats_close(got, reference(a, b), f"diff {dtype} seed={rng_seed}", pair=True)


def test_diff_stats_of_weight_updates_crossing_zero(rng_seed):
    # Weights near zero make float32 differences inexact: counts and bins must still be exact.
    g = torch.Generator().manual_seed(rng_seed)
    w = torch.randn(3_000_000, generator=g) * 0.05
    w2 = w - 1e-4 * torch.randn(w.shape, generator=g)
    w2[:1000] = -w[:1000]  # sign flips: the hardest differences
    assert_stats_close(diff_stats([w2], [w]), reference([w2], [w]), f"updates seed={rng_seed}", pair=True)


def test_diff_rounding_onto_power_of_two_keeps_bins():
    # 1 - 2^-25 is not a float32: fl(a - b) rounds onto 1.0, the bin below must still be counted.
    a = torch.full((4096,), 1.0, dtype=torch.float32)
    b = torch.full((4096,), 2.0**-25, dtype=torch.float32)
    assert_stats_close(diff_stats([a], [b]), reference([a], [b]), "power of two", pair=True)


def test_diff_stats_of_mixed_dtype_pairs(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    a = [torch.randn(5000, generator=g).to(torch.bfloat16), torch.randn(300, generator=g)]
    b = [torch.randn(5000, generator=g), torch.randn(300, generator=g).double()]
    assert_stats_close(diff_stats(a, b), reference(a, b), "mixed pair", pair=True)


def test_async_on_cpu_is_done_and_equal(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    tensors = [planted(n, torch.float32, g) for n in (10, 100_000)]
    pending = gradprobe.tensor_stats_async(tensors)
    assert pending.done()
    assert_stats_close(pending.result(), tensor_stats(tensors), "async")
    assert pending.result() is pending.result()


def test_histogram_can_be_skipped():
    s = tensor_stats([torch.randn(1000)], histogram=False)
    assert s.hist is None and s.numel[0] == 1000


def test_hist_edges_are_powers_of_two_covering_2e40():
    edges = gradprobe.hist_edges()
    assert edges[0] == 0 and np.isinf(edges[-1]) and len(edges) == gradprobe.HIST_BINS + 1
    powers = edges[1:-1]
    assert np.all(np.diff(powers) > 0)
    assert np.all(np.log2(powers) == np.round(np.log2(powers)))
    assert powers[0] <= 2.0**-40 and powers[-1] >= 2.0**40


def test_over_2_pow_31_elements_uses_64_bit_indexing():
    n = 2**31 + 1000
    x = torch.zeros(n, dtype=torch.float16)
    x[-1], x[2**31 + 3], x[5] = 2.0, -4.0, float("nan")
    s = tensor_stats([x])
    assert s.numel[0] == n and s.nans[0] == 1 and s.finite[0] == n - 1
    assert s.zeros[0] == n - 3 and s.l1[0] == 6.0 and s.min[0] == -4.0 and s.max[0] == 2.0
    assert s.hist[0].sum() == 2
