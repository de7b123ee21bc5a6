"""Two gloo ranks in one launch: DDP with the statistics split across ranks (each rank's partition
equals the single-process float64 statistics of the all-reduced gradients, each rank reduced only
its share), a planted NaN stopping both ranks at the same step, and FSDP2 shards whose merged
statistics equal those of the unsharded gradients, and a rank killed mid-run leaves the other's
data readable."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch.multiprocessing as mp

import gradprobe
from gradprobe.stats import FIELDS

from . import dist_worker


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(dist_worker.run, args=(2, port, str(out)), nprocs=2, join=True)
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def assert_partition_matches(run, rank: int, oracles: list[dict]) -> None:
    stats = run.stats("grad")
    mine = stats[stats["rank"] == rank]
    assert mine["present"].all()
    rows, counts, _ = run.hist("grad")
    fields = len(FIELDS)
    for step, expected in enumerate(oracles):
        at = mine[mine["step"] == step].set_index("tensor")
        assert sorted(at.index) == sorted(expected)
        for name, values in expected.items():
            hist = counts[((rows["rank"] == rank) & (rows["step"] == step) & (rows["tensor"] == name)).to_numpy()]
            np.testing.assert_array_equal(hist[0], values[fields:], err_msg=f"rank {rank} step {step} {name}")
            values = values[:fields]
            scale = max(abs(values[FIELDS.index("min")]), abs(values[FIELDS.index("max")]))
            # Near-cancelling means are compared at the tensor's scale, not their own.
            np.testing.assert_allclose(at.loc[name, list(FIELDS)].to_numpy(float), values, rtol=1e-6,
                                       atol=1e-7 * scale, err_msg=f"rank {rank} step {step} {name}")


def test_ddp_split_statistics_equal_the_single_process_ones(two_ranks):
    out, results = two_ranks
    run = gradprobe.open_run(out / "ddp")
    assert [r["ddp"]["mode"] for r in results] == ["replicated", "replicated"]
    assert [r["ddp"]["adapter_mode"] for r in results] == ["replicated", "replicated"]
    assert sorted(run.table("stats").column("rank").unique().to_pylist()) == [0, 1]  # a partition per rank
    for rank, result in enumerate(results):
        assert len(result["ddp"]["oracles"]) == dist_worker.NAN_STEP
        assert_partition_matches(run, rank, result["ddp"]["oracles"])
    tensors = len(results[0]["ddp"]["oracles"][0])
    owned = [r["ddp"]["owned"] for r in results]
    assert all(0 < n < tensors for per_rank in owned for n in per_rank)  # each rank reduced only a share
    assert [a + b for a, b in zip(*owned)] == [tensors] * len(owned[0])
    ranks = run.ranks().set_index("rank")
    assert ranks[["local_rank", "world_size", "distributed"]].to_dict("index") == {
        0: {"local_rank": 0, "world_size": 2, "distributed": "replicated"},
        1: {"local_rank": 1, "world_size": 2, "distributed": "replicated"}}
    assert ranks["node"].astype(bool).all()


def test_rank_0_finds_and_its_stop_stops_both_ranks_at_the_same_step(two_ranks):
    out, results = two_ranks
    stops = [r["ddp"]["stopped_at"] for r in results]
    assert stops[0] == stops[1] and dist_worker.NAN_STEP <= stops[0] < 40, stops
    findings = gradprobe.open_run(out / "ddp").events("finding")
    assert findings and {f["rank"] for f in findings} == {0}  # once per job, not once per rank


def test_fsdp_merged_statistics_equal_the_unsharded_ones(two_ranks):
    out, results = two_ranks
    run = gradprobe.open_run(out / "fsdp")
    assert [r["fsdp"]["mode"] for r in results] == ["sharded", "sharded"]
    local = [r["fsdp"]["local_numels"] for r in results]
    assert any(a != b for a, b in zip(*local))  # the shards really differ (uneven, one even empty)
    for rank, result in enumerate(results):
        assert len(result["fsdp"]["oracles"]) == dist_worker.FSDP_STEPS
        assert_partition_matches(run, rank, result["fsdp"]["oracles"])


def test_fsdp1_clip_grad_norm_method_leaves_the_recorded_shards_unclipped(two_ranks):
    out, results = two_ranks
    totals = results[0]["fsdp1"]["totals"]
    assert totals == results[1]["fsdp1"]["totals"] and min(totals) > 1e-2  # clipping to 1e-4 really happened
    grads = gradprobe.open_run(out / "fsdp1").stats("grad")
    grads = grads[grads.present]
    recorded = grads.groupby("step").l2.apply(lambda l2: float((l2 ** 2).sum() ** 0.5)).to_numpy()
    np.testing.assert_allclose(recorded, totals, rtol=1e-5)  # both ranks' shards, before the clip


def test_a_crashed_rank_leaves_the_others_data_readable(two_ranks):
    out, _ = two_ranks
    assert "Connection" in json.loads((out / "crash.json").read_text())["error"]  # rank 0 saw its peer die
    run = gradprobe.open_run(out / "crash")
    assert run.meta["status"] == "failed"
    grads = run.stats("grad")
    survivor = grads[grads["rank"] == 0]
    # The steps the peer exchanged before it died are whole; the crash step's exchange failed, and
    # the survivor keeps (at most) its own rows of it.
    before = survivor[survivor["step"] < dist_worker.CRASH_STEP]
    assert sorted(before["step"].unique()) == list(range(dist_worker.CRASH_STEP)) and before["present"].all()
    assert survivor["step"].max() <= dist_worker.CRASH_STEP
    assert [e["status"] for e in run.events("close")] == ["failed"]  # rank 0's; rank 1 never closed
