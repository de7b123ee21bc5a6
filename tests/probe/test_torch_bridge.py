"""The libtorch metadata reader (gradprobe._torch_bridge) against the CPython reader it replaces:
every row (pointer, element count, dtype code, device, layout key, status, version) is the same for
dense, transposed, channels_last, sliced, stepped, expanded, overlapping, empty, freed-storage, meta,
sparse, integer and missing tensors, and for their gradients. The bridge is built against the torch
of the test environment (scripts/setup.sh builds without isolation), so it must be in use here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe import _core, torch_bridge
from gradprobe.probe.tensor_table import TensorTable


def tensors() -> list[torch.Tensor | None]:
    base = torch.randn(6, 8)
    freed = torch.randn(16)
    freed_view = freed[4:]
    freed.untyped_storage().resize_(0)
    out = [
        base, base.t(), base[:, 2:5], base[::2], base[1:, ::3], torch.randn(1, 8).expand(5, 8),
        torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last), torch.randn(0, 3), torch.randn(()),
        base.half(), base.bfloat16(), base.double(), torch.arange(10), torch.randn(3, 3, device="meta"),
        torch.randn(4, 4).to_sparse(), freed_view, torch.randn(5).as_strided((3, 3), (1, 1)), None,
    ]
    return out


def both(objects: list, attr):
    n = len(objects)
    results = []
    for use_bridge in (False, True):
        if use_bridge:
            assert torch_bridge.install() == "libtorch", torch_bridge.status()
        else:
            torch_bridge.uninstall()
        arrays = [np.full(n, 77, np.int64), np.full(n, 77, np.int64), np.full(n, 77, np.int32),
                  np.full(n, 77, np.int32), np.full(n, 77, np.int64), np.full(n, 77, np.int32)]
        # Fresh arrays: the CPython reader's cached verdicts must not hide a difference.
        codes = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}
        missing = _core.gather_tensors(objects, attr, codes, *arrays)
        versions, ptrs = np.zeros(n, np.int64), np.zeros(n, np.int64)
        _core.tensor_versions(objects, attr, versions, ptrs)
        results.append((missing, arrays, versions, ptrs))
        torch_bridge._state.pop("status", None)
    torch_bridge.install()
    return results


def test_rows_of_every_layout_equal_the_cpython_readers():
    objects = [t for t in tensors() if t is not None] + [None]
    (miss_a, rows_a, ver_a, ptr_a), (miss_b, rows_b, ver_b, ptr_b) = both(objects, None)
    assert miss_a == miss_b == 1
    for name, a, b in zip(["ptrs", "numels", "dtypes", "devices", "keys", "status"], rows_a, rows_b):
        unsupported = rows_a[5] == _core.GATHER_STATUS["unsupported"]
        if name in ("ptrs", "keys"):  # the CPython reader gives none for unsupported rows either way
            a, b = a[~unsupported], b[~unsupported]
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(ver_a, ver_b)
    np.testing.assert_array_equal(ptr_a[ptr_a != 0], ptr_b[ptr_a != 0])


def test_gradients_and_their_versions_equal_the_cpython_readers():
    params = [torch.nn.Parameter(torch.randn(4, 5)), torch.nn.Parameter(torch.randn(3)),
              torch.nn.Parameter(torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last))]
    sum(p.sum() for p in params[::2]).backward()  # the middle one has no gradient
    params[0].grad.mul_(2)  # a version bump
    (miss_a, rows_a, ver_a, ptr_a), (miss_b, rows_b, ver_b, ptr_b) = both(params, "grad")
    assert miss_a == miss_b == 1
    for a, b in zip(rows_a, rows_b):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ver_a, ver_b)
    assert ver_a[0] == params[0].grad._version > 0 and ver_a[1] == -1
    np.testing.assert_array_equal(ptr_a, ptr_b)


def test_a_tensor_subclass_is_read_through_python():
    class Tagged(torch.Tensor):
        pass

    plain = torch.randn(3)
    tagged = plain.as_subclass(Tagged)
    table = TensorTable([plain, tagged])
    gathered = table.gather(None)
    assert list(gathered.rows) == [0, 1] and gathered.table.a_ptrs[1] == plain.data_ptr()


@pytest.mark.parametrize("attr", [("grad", "_local_tensor")])
def test_attribute_paths_other_than_grad_use_the_cpython_reader(attr):
    p = torch.nn.Parameter(torch.randn(3))
    assert _core.gather_tensors([p], attr, {torch.float32: 0}, *[np.zeros(1, t) for t in
                                (np.int64, np.int64, np.int32, np.int32, np.int64, np.int32)]) == 1
