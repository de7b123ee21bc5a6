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

from .oracle import assert_stats_close, reference

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "transposed", "permuted", "stepped", "expanded", "channels_last", "narrowed",
           "overlapping", "flipped"]


def make(layout: str, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """A tensor of about 100-3000 elements in `layout`, from a larger base so that a view that read
    outside itself would read other values."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(6, 7, 9, 5, generator=g).to(dtype)
    if layout == "contiguous":
        return base
    if layout == "transposed":
        return base[0, 0].t()
    if layout == "permuted":
        return base.permute(2, 0, 3, 1)
    if layout == "stepped":
        return base[::2, 1::3, :, ::2]
    if layout == "expanded":
        return base[:, :1, :1, :].expand(6, 7, 9, 5)
    if layout == "channels_last":
        return base.contiguous(memory_format=torch.channels_last)
    if layout == "narrowed":
        return base.narrow(1, 2, 3)
    if layout == "overlapping":
        return base.flatten().as_strided((40, 8), (3, 1), 5)
    if layout == "flipped":  # negative strides: NumPy only (torch's flip copies)
        numpy_dtype = {torch.float64: np.float64, torch.float16: np.float16}.get(dtype, np.float32)
        return base.float().numpy().astype(numpy_dtype)[::-1, :, ::-2]  # type: ignore[return-value]
    raise AssertionError(layout)


def logical(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x.contiguous()


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
