"""Invariants (hypothesis): counts add up, scaling, merge of halves equals the whole."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gradprobe import merge, tensor_stats

from .oracle import assert_stats_close

finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)
data = arrays(np.float32, st.integers(0, 3000), elements=finite_or_not)
finite_data = arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1e6, 1e6, width=32))
# Scaling by 2^k is exact only while nothing under- or overflows: |x| >= 2^-100 (or 0) keeps x * 2^-20 normal.
scalable_data = arrays(np.float32, st.integers(1, 3000),
                       elements=st.floats(-1e6, 1e6, width=32).filter(lambda v: v == 0 or abs(v) >= 2.0**-100))
# Values of known binary exponent (sign * m * 2^e, m in [1, 2)), for the histogram-shift property.
signs = st.sampled_from([-1.0, 1.0])
exponent_data = arrays(np.float32, st.integers(1, 300),
                       elements=st.builds(lambda s, m, e: np.float32(s * m * 2.0**e), signs, st.floats(1, 1.99),
                                          st.integers(-44, 43)))


@settings(max_examples=60, deadline=None)
@given(data)
def test_counts_add_up(x):
    s = tensor_stats([x])
    assert s.numel[0] == x.size
    assert s.finite[0] + s.nans[0] + s.infs[0] == s.numel[0]
    assert s.hist[0].sum() + s.zeros[0] + s.nans[0] + s.infs[0] == s.numel[0]
    assert s.nans[0] == np.isnan(x).sum() and s.infs[0] == np.isinf(x).sum() and s.zeros[0] == (x == 0).sum()


@settings(max_examples=40, deadline=None)
@given(scalable_data, st.integers(-20, 20))
def test_power_of_two_scaling_is_exact_and_shifts_histogram(x, k):
    s, t = tensor_stats([x]), tensor_stats([x * np.float32(2.0**k)])
    c = 2.0**k
    assert t.min[0] == s.min[0] * c and t.max[0] == s.max[0] * c
    assert abs(t.l1[0] - s.l1[0] * c) <= 1e-6 * s.l1[0] * c
    assert abs(t.l2[0] - s.l2[0] * c) <= 1e-6 * s.l2[0] * c


@settings(max_examples=40, deadline=None)
@given(exponent_data, st.integers(-20, 20))
def test_power_of_two_scaling_shifts_the_histogram(x, k):
    # Precondition: before and after scaling, every value has a bin of its own exponent (none in the
    # under- or overflow bins) and stays a normal float32.
    lowest, highest = np.abs(x).min(), np.abs(x).max()
    assume(2.0**-64 <= lowest * 2.0**min(k, 0) and highest * 2.0**max(k, 0) < 2.0**64)
    assume(lowest * 2.0**min(k, 0) >= np.finfo(np.float32).tiny)
    s, t = tensor_stats([x]), tensor_stats([x * np.float32(2.0**k)])
    assert s.hist[0][0] == s.hist[0][-1] == t.hist[0][0] == t.hist[0][-1] == 0
    assert (np.roll(t.hist[0], -k) == s.hist[0]).all() and s.hist[0].sum() == x.size


@settings(max_examples=40, deadline=None)
@given(finite_data, st.floats(-1e3, 1e3).filter(lambda c: abs(c) > 1e-3))
def test_norms_scale_with_abs_c(x, c):
    s = tensor_stats([x.astype(np.float64)])
    t = tensor_stats([x.astype(np.float64) * c])
    assert abs(t.l2[0] - abs(c) * s.l2[0]) <= 1e-9 * abs(c) * s.l2[0] + 1e-300
    assert abs(t.l1[0] - abs(c) * s.l1[0]) <= 1e-9 * abs(c) * s.l1[0] + 1e-300


@settings(max_examples=60, deadline=None)
@given(data, st.floats(0, 1))
def test_merge_of_halves_equals_whole(x, frac):
    k = int(frac * x.size)
    whole = tensor_stats([x])
    merged = merge(tensor_stats([x[:k]]), tensor_stats([x[k:]]))
    # The halves may take the exact path and the whole the float-lane path: kernel tolerance.
    assert_stats_close(merged, whole, "merge")
    exact = merge(tensor_stats([x[:k]], backend="torch"), tensor_stats([x[k:]], backend="torch"))
    assert_stats_close(exact, tensor_stats([x], backend="torch"), "merge exact", rtol=1e-9)


def test_merge_many_chunks_of_large_tensor():
    x = torch.randn(1_000_003, dtype=torch.float64) * 3 + 5
    parts = torch.split(x, 77_777)
    acc = tensor_stats([parts[0]])
    for p in parts[1:]:
        acc = merge(acc, tensor_stats([p]))
    assert_stats_close(acc, tensor_stats([x]), "chunks", rtol=1e-9)
