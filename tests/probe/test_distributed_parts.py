"""The distributed exchange's pieces in one process: shards' statistics packed, unpacked and merged
equal the float64 statistics of the whole tensors (uneven, empty and absent shards, NaN and Inf
planted); owned rows pick each tensor from its owner; owners balance the bytes; the modes resolve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe import tensor_stats
from gradprobe.probe.consumer import expand
from gradprobe.probe.distributed import balanced_owners, merge_shards, owned_rows, pack, resolve_mode, unpack

from ..stats.oracle import assert_stats_close, reference


def test_merged_shards_equal_the_whole(rng_seed):
    g = torch.Generator().manual_seed(rng_seed)
    wholes = [torch.randn(n, generator=g) * scale for n, scale in ((1000, 1.0), (7, 1e-3), (64, 30.0), (5, 1.0))]
    wholes[0][3], wholes[2][10] = float("nan"), float("inf")
    # 3 ranks; tensor 1 lies entirely on rank 2, tensor 3 has no shard on rank 1 (absent there).
    cuts = [(0, 400, 990, 1000), (0, 0, 0, 7), (0, 21, 40, 64), (0, 2, 2, 5)]
    shards = []
    for rank in range(3):
        pieces = [w[c[rank]:c[rank + 1]] for w, c in zip(wholes, cuts)]
        stats = tensor_stats(pieces, backend="cpu")
        present = np.array([True, True, True, rank != 1])
        shards.append(unpack(pack(stats, present, histogram=True), histogram=True))
    merged, present = merge_shards(shards)
    assert present.all()
    assert_stats_close(merged, reference([w.double() for w in wholes]), "merged shards")


def test_owned_rows_take_each_tensor_from_its_owner():
    wholes = [torch.randn(n) for n in (5, 9, 3)]
    full = tensor_stats(wholes, backend="cpu")
    owners = np.array([1, 0, 1])
    shards = []
    for rank in range(2):
        mine = owners == rank
        result_rows = np.where(mine, np.cumsum(mine) - 1, -1)  # as the capture lays out a rank's share
        stats = expand(tensor_stats([w for w, m in zip(wholes, mine) if m], backend="cpu"), result_rows)
        shards.append(unpack(pack(stats, mine, histogram=True), histogram=True))
    combined, present = owned_rows(shards, owners)
    assert present.all()
    np.testing.assert_array_equal(combined.table(), full.table())
    np.testing.assert_array_equal(combined.hist, full.hist)


def test_owners_balance_the_elements():
    numels = [30522 * 768, 768 * 768, 768 * 768, 3072 * 768, 768 * 3072, 768, 768, 3072]
    owners = balanced_owners(numels, 2)
    loads = [sum(n for n, o in zip(numels, owners) if o == r) for r in range(2)]
    assert set(owners) == {0, 1} and max(loads) == 30522 * 768  # the embedding alone; the rest on the other
    assert balanced_owners(numels, 2).tolist() == owners.tolist()  # the same answer on every rank


def test_modes_resolve():
    model = torch.nn.Linear(2, 2)
    assert resolve_mode("auto", model, 1) == "off"
    assert resolve_mode("replicated", model, 1) == "off"  # nothing to share on one process
    assert resolve_mode("auto", model, 2) == "off"  # a plain module: each rank measures what it holds
    assert resolve_mode("replicated", model, 2) == "replicated"
    with pytest.raises(ValueError, match="needs the parameters sharded"):
        resolve_mode("sharded", model, 2)
    with pytest.raises(ValueError, match="unknown"):
        resolve_mode("ddp", model, 2)


def test_dtensor_parameters_are_read_as_shards_or_refused():
    def as_dtensor(param):  # what is_dtensor looks at (FSDP2 parameters are DTensors)
        param._local_tensor, param.placements = param.detach(), ()
        return param

    model = torch.nn.Linear(2, 2)
    for p in model.parameters():
        as_dtensor(p)
    assert resolve_mode("auto", model, 1) == "sharded"  # a wrapper read as dense would mix up shards
    assert resolve_mode("auto", model, 2) == "sharded"
    with pytest.raises(ValueError, match="cannot read DTensor"):
        resolve_mode("off", model, 2)
    half = torch.nn.Sequential(model, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="some parameters are DTensors"):
        resolve_mode("auto", half, 2)
