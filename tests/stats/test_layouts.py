"""Statistics of tensors in every layout (transposed, permuted, stepped slices, expanded,
channels_last, narrowed, negative-stride NumPy views, overlapping as_strided) and of pairs in
mixed layouts, against the float64 oracle on contiguous copies (the logical elements)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradprobe import diff_stats, tensor_stats
from gradprobe.stats.inputs import InputError

from .data import DTYPES, LAYOUTS, logical
from .data import layout_view as make
from .oracle import assert_stats_close, reference


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LAYOUTS), st.integers(0, 2**16), st.sampled_from(DTYPES)),
                min_size=1, max_size=5))
def test_tensor_stats_of_any_layout_match_the_oracle(cases):
    tensors = [make(layout, seed, dtype) for layout, seed, dtype in cases]
    got = tensor_stats(tensors)
    want = reference([logical(t) for t in tensors])
    assert_stats_close(got, want, context=str(cases))
    if not isinstance(tensors[0], np.ndarray):
        assert got.l2[0] == pytest.approx(logical(tensors[0]).double().norm().item(), rel=1e-6)


def relayout(t: torch.Tensor, order: str) -> torch.Tensor:
    """The same logical values in another memory order."""
    if order == "reversed" and t.dim() > 1:
        dims = list(range(t.dim()))[::-1]
        return t.permute(dims).contiguous().permute(dims)
    if order == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([x for x in LAYOUTS if x != "flipped"]), st.sampled_from(["contiguous", "reversed",
       "channels_last"]), st.integers(0, 2**16), st.sampled_from(DTYPES))
def test_diff_stats_pair_logical_elements_whatever_each_layout(layout_a, order_b, seed, dtype):
    a = make(layout_a, seed, dtype)
    b = relayout((logical(a).double() * 0.5 + 1).to(dtype), order_b)
    got = diff_stats([a], [b])
    want = reference([logical(a)], [b.contiguous()])
    assert_stats_close(got, want, context=f"{layout_a} vs {order_b}", pair=True)
    exact = (logical(a).double() - b.double()).norm().item()
    assert got.l2[0] == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_values_in_different_layouts_give_a_zero_difference(dtype):
    a = torch.randn(64, 48).to(dtype)
    cases = [(a.t(), a.t().contiguous()), (a, a.t().contiguous().t()),
             (a.reshape(2, 3, 8, 64).contiguous(memory_format=torch.channels_last), a.reshape(2, 3, 8, 64)),
             (a[::2, 1::3], a[::2, 1::3].contiguous())]
    got = diff_stats([x for x, _ in cases], [y for _, y in cases])
    assert (got.l2 == 0).all() and (got.zeros == got.numel).all()
    flipped = np.ascontiguousarray(a.float().numpy())[::-1]
    assert diff_stats([flipped], [np.ascontiguousarray(flipped)]).l2[0] == 0


def test_a_tensor_whose_storage_was_shrunk_or_freed_is_refused_by_name():
    shrunk, freed = torch.ones(100), torch.ones(100)
    shrunk.untyped_storage().resize_(8)
    freed.untyped_storage().resize_(0)
    for bad in (shrunk, freed):
        with pytest.raises(InputError, match="tensor 1: its elements lie outside its storage"):
            tensor_stats([torch.ones(3), bad])
