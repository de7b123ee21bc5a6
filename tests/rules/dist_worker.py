"""One rank of the 2-process gloo stop test (run by torch.multiprocessing.spawn)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist


def run(rank: int, world_size: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        from gradprobe import Probe
        from gradprobe.actions import StopTraining
        from gradprobe.rules.nonfinite import NonFinite

        torch.manual_seed(rank)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        stopped_at = -1
        with Probe(model, opt, out_dir=Path(out) / "run", rules=[NonFinite()], actions=[StopTraining()]) as probe:
            for step in range(40):
                x = torch.randn(4, 8)
                if rank == 1 and step == 3:
                    x[0, 0] = float("nan")  # only rank 1 sees the bad batch
                model(x).pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
                probe.step()
                if probe.should_stop:
                    stopped_at = step
                    break
        Path(out, f"rank{rank}.txt").write_text(str(stopped_at))
    finally:
        dist.destroy_process_group()
        os._exit(0)
