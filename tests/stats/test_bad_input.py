"""Bad input gets an error naming the offending tensor; nothing crashes the interpreter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradprobe
from gradprobe import InputError, diff_stats, tensor_stats


@pytest.mark.parametrize("bad, words", [
    (torch.arange(10), "int64"),
    (torch.ones(3, dtype=torch.bool), "bool"),
    (torch.ones(3, dtype=torch.complex64), "complex64"),
    (torch.ones(4).to_sparse(), "sparse"),
    (torch.empty(4, device="meta"), "meta"),
    (np.arange(5), "int64"),
    (3.0, "float"),
    ("text", "str"),
])
def test_bad_tensor_is_named_by_index(bad, words):
    with pytest.raises(InputError) as error:
        tensor_stats([torch.randn(3), torch.randn(2), bad])
    assert "tensor 2" in str(error.value) and words in str(error.value)


def test_diff_stats_lists_of_different_length():
    with pytest.raises(InputError, match="2 tensors in a but 1 in b"):
        diff_stats([torch.randn(3), torch.randn(3)], [torch.randn(3)])


def test_diff_stats_shape_mismatch_names_index():
    with pytest.raises(InputError, match="tensor 1: shapes differ"):
        diff_stats([torch.randn(3), torch.randn(4)], [torch.randn(3), torch.randn(5)])


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        tensor_stats([torch.randn(3)], backend="tpu")


def test_unusable_backend_says_why():
    if "cuda" in gradprobe.backends():
        pytest.skip("CUDA is usable here")
    with pytest.raises(RuntimeError, match="backend 'cuda' is unavailable: .+"):
        tensor_stats([torch.randn(3)], backend="cuda")


def test_not_a_sequence():
    with pytest.raises(InputError, match="sequence"):
        tensor_stats(torch.randn(3).numpy().tobytes())


def test_to_pandas_names_length_checked():
    s = tensor_stats([torch.randn(3)])
    with pytest.raises(ValueError, match="2 names for 1 tensors"):
        s.to_pandas(["a", "b"])
    assert list(s.to_pandas(["w"]).index) == ["w"]


def test_native_table_rejects_bad_codes_and_shapes():
    from gradprobe import _core

    z = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="unknown dtype code"):
        _core.TensorTable(z + 8, z, z + 1, np.array([9], np.int32), np.array([0], np.int32))
    with pytest.raises(ValueError, match="equal length"):
        _core.TensorTable(z, np.zeros(2, np.int64), z, np.zeros(1, np.int32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="null data pointer"):
        _core.TensorTable(z, z, z + 5, np.zeros(1, np.int32), np.zeros(1, np.int32))
    table = _core.TensorTable(z, z, z, np.zeros(1, np.int32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="out: expected"):
        _core.CpuEngine().run(table, np.zeros((2, 11)), None)
    with pytest.raises(ValueError, match="hist: expected a C-contiguous uint64"):
        _core.CpuEngine().run(table, np.zeros((1, 11)), np.zeros((1, 130)))
