"""When the training loop should stop: a stop asked for by an action (through the rule engine's
`stop_reason`) or by probe.stop(). In one process a request counts at once; across ranks every
rank stops on the same step: the request is reduced (max) across ranks at the end of a step, every
step under gloo (a few microseconds), every 50 under NCCL (reading its result waits for the GPU)."""

from __future__ import annotations

import torch
import torch.distributed as dist


class StopAgreement:
    def __init__(self, world_size: int, check_every: int | None = None) -> None:
        self.world_size = world_size
        self.check_every = check_every

    @property
    def immediate(self) -> bool:
        """Whether a request counts at once (one process) or only at an agreed step end."""
        return self.world_size == 1

    def end_of_step(self, asked: str | None, train_step: int) -> str | None:
        """The reason to stop after this step, agreed by every rank alike (None: go on)."""
        if self.world_size == 1:
            return asked
        every = self.check_every or (50 if dist.get_backend() == "nccl" else 1)
        if (train_step + 1) % every:
            return None
        return _agree(asked)


def _agree(reason: str | None) -> str | None:
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if reason is not None else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if int(flag.item()) and reason is None:
        return "stop requested by another rank"
    return reason
