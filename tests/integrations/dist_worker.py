"""One rank of the 2-process gloo tests (run by torch.multiprocessing.spawn): a DDP run whose
statistics are split across the ranks and stopped by a planted NaN, then an FSDP2 run whose sharded
statistics are merged. Each rank saves its float64 oracles (statistics of the whole, all-reduced or
unsharded, gradients, computed by the torch reference) for the parent to compare with the run store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

FSDP_STEPS = 3
NAN_STEP = 5
CRASH_STEP = 3


def oracle(names: list[str], grads: list[torch.Tensor]) -> dict[str, list[float]]:
    """Per tensor: the FIELDS, then the histogram counts (float64 reference over the float32 values)."""
    from gradprobe import tensor_stats

    stats = tensor_stats([g.detach().double() for g in grads], backend="torch", histogram=True)
    return {name: stats.table()[i].tolist() + stats.hist[i].tolist() for i, name in enumerate(names)}


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # every rank starts from the same weights
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8),
                               torch.nn.Tanh(), torch.nn.Linear(8, 1))


def ddp_run(rank: int, out: Path) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    from gradprobe import Probe
    from gradprobe.actions import StopTraining
    from gradprobe.rules.nonfinite import NonFinite

    ddp = DistributedDataParallel(model())
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    names = [n for n, _ in ddp.named_parameters()]
    oracles, stopped_at = [], -1
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own batches
    with Probe(ddp, opt, out_dir=out / "ddp", rules=[NonFinite()], actions=[StopTraining()]) as probe:
        for step in range(40):
            x = torch.randn(8, 16, generator=generator)
            if rank == 1 and step == NAN_STEP:
                x[0, 0] = float("nan")  # only rank 1's batch; the all-reduce spreads it
            ddp(x).pow(2).mean().backward()
            if step < NAN_STEP:
                oracles.append(oracle(names, [p.grad for p in ddp.parameters()]))
            opt.step()
            opt.zero_grad()
            probe.step()
            if probe.should_stop:
                stopped_at = step
                break
        split = probe._capture.distribution._splits
        owned = [int(mine.sum()) for mine, _ in split.values()]
        mode = probe.distributed
    return {"oracles": oracles, "stopped_at": stopped_at, "owned": owned, "mode": mode,
            "adapter_mode": adapter_mode(out)}


def adapter_mode(out: Path) -> str:
    """What the callbacks open under a framework's DDP: the unwrapped model, told it is replicated."""
    from gradprobe.integrations import ProbeSettings

    net = model()
    probe = ProbeSettings(out / "adapter", rules=[]).open(net, [torch.optim.SGD(net.parameters(), lr=0.1)],
                                                          data_parallel=True)
    probe.close()
    return probe.distributed


def fsdp_run(rank: int, out: Path) -> dict:
    from torch.distributed.fsdp import fully_shard

    from gradprobe import Probe

    net = model(1)
    fully_shard(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    names = [n for n, _ in net.named_parameters()]
    oracles = []
    generator = torch.Generator().manual_seed(200 + rank)
    with Probe(net, opt, out_dir=out / "fsdp", rules=[]) as probe:
        for _ in range(FSDP_STEPS):
            net(torch.randn(8, 16, generator=generator)).pow(2).mean().backward()
            full = [p.grad.full_tensor() for p in net.parameters()]  # a collective: every rank, same order
            oracles.append(oracle(names, full))
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1e-4)  # recorded: the values before it
            opt.step()
            opt.zero_grad()
            probe.step()
        mode = probe.distributed
    return {"oracles": oracles, "mode": mode, "local_numels": [p.to_local().numel() for p in net.parameters()]}


def fsdp1_clip_run(rank: int, out: Path) -> dict:
    """FSDP1's own clip_grad_norm_ method (a collective): each rank records its local gradient shards
    as they were before it; the method returns the total norm they make together."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    from gradprobe import Probe

    net = FullyShardedDataParallel(model(3), device_id=torch.device("cpu"), use_orig_params=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    totals = []
    generator = torch.Generator().manual_seed(300 + rank)
    with Probe(net, opt, out_dir=out / "fsdp1", rules=[], config={"distributed": "off"}) as probe:
        for _ in range(FSDP_STEPS):
            net(torch.randn(8, 16, generator=generator)).pow(2).mean().mul(100).backward()
            totals.append(float(net.clip_grad_norm_(1e-4)))
            opt.step()
            opt.zero_grad()
            probe.step()
    return {"totals": totals}


def crash_run(rank: int, out: Path) -> None:
    """Rank 1 dies abruptly at step CRASH_STEP; rank 0's next collective fails and its probe closes."""
    from gradprobe import Probe

    net = model(2)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    error = None
    try:
        with Probe(net, opt, out_dir=out / "crash", rules=[], config={"distributed": "replicated"}) as probe:
            for step in range(20):
                if rank == 1 and step == CRASH_STEP:
                    probe.flush()  # its exchanges of the steps before are done: the survivor's are whole
                    os._exit(0)  # then no cleanup, no close: as a killed process
                net(torch.randn(8, 16)).pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
                probe.step()
    except RuntimeError as failure:  # the training's own collective (the stop agreement) fails
        error = repr(failure)
    Path(out, "crash.json").write_text(json.dumps({"error": error}))


def run(rank: int, world_size: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    os.environ["LOCAL_RANK"] = str(rank)  # as torchrun sets it
    try:
        result = {"ddp": ddp_run(rank, Path(out)), "fsdp": fsdp_run(rank, Path(out)),
                  "fsdp1": fsdp1_clip_run(rank, Path(out))}
        Path(out, f"rank{rank}.json").write_text(json.dumps(result, default=float))
        crash_run(rank, Path(out))  # last: it ends the group
    finally:
        dist.destroy_process_group()
        os._exit(0)
