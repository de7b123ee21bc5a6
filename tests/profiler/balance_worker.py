"""One rank of the 2-process gloo LoadBalancing test (run by torch.multiprocessing.spawn): rank 1's
forward is slower; both ranks write the profiler findings they got."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

SLOW_FORWARD = 0.03


def run(rank: int, world_size: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        from gradprobe import Probe

        from .helpers import profiler_rules

        class Model(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.linear = torch.nn.Linear(8, 1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if rank == 1:
                    time.sleep(SLOW_FORWARD)
                return self.linear(x)

        torch.manual_seed(rank)
        model = Model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        config = {"preset": "minimal", "profiler": {"system_interval": 0.1, "exchange_every": 20}}
        with Probe(model, optimizer, out_dir=Path(out) / "run", config=config, rules=profiler_rules()) as probe:
            for _ in range(60):
                model(torch.randn(4, 8)).pow(2).mean().backward()
                optimizer.step()
                optimizer.zero_grad()
                probe.step()
        found = [{"rule": f.rule, "tensors": list(f.tensors), "message": f.message, "evidence": dict(f.evidence)}
                 for f in probe.findings]
        Path(out, f"rank{rank}.json").write_text(json.dumps(found))
    finally:
        dist.destroy_process_group()
        os._exit(0)
