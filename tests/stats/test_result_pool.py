"""Pooled read buffers: results built from reused buffers stay independent and equal to the oracle."""

from __future__ import annotations

import numpy as np
import torch

from gradprobe.stats.computer import StatsComputer


def _oracle_l2(tensors):
    return np.array([float(t.double().norm()) for t in tensors])


def test_results_from_reused_buffers_do_not_alias_each_other():
    computer = StatsComputer()
    first_inputs = [torch.randn(100), torch.randn(7, 3)]
    second_inputs = [torch.randn(50) * 10, torch.full((4,), float("nan"))]
    first = computer.launch(first_inputs, None, histogram=True, backend="cpu").result()
    kept_l2, kept_hist = first.l2.copy(), first.hist.copy()
    second = computer.launch(second_inputs, None, histogram=True, backend="cpu").result()
    np.testing.assert_allclose(first.l2, _oracle_l2(first_inputs), rtol=1e-6)
    np.testing.assert_array_equal(first.l2, kept_l2)  # the second read did not overwrite the first result
    np.testing.assert_array_equal(first.hist, kept_hist)
    np.testing.assert_allclose(second.l2[:1], _oracle_l2(second_inputs[:1]), rtol=1e-6)
    assert second.nans[1] == 4 and second.hist[1].sum() == 0  # a reused histogram buffer starts at zero
    assert first.hist[0].sum() == 100


def test_the_pool_reuses_one_buffer_pair_per_shape():
    computer = StatsComputer()
    pool = computer._pool
    for _ in range(5):
        computer.launch([torch.randn(10), torch.randn(3)], None, histogram=True, backend="cpu").result()
    assert [len(free) for free in pool._free.values()] == [1]


def test_one_row_results_are_copies_too():
    """A one-row column slice is contiguous: it must still be copied out of the reused buffer."""
    computer = StatsComputer()
    first = computer.launch([torch.ones(1)], None, histogram=True, backend="cpu").result()
    computer.launch([torch.full((1,), 4.0)], None, histogram=True, backend="cpu").result()
    assert first.l2[0] == 1.0 and first.max[0] == 1.0
