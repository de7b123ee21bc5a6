"""What peers do per step: a Python loop, several kernels and a blocking .item() per tensor per statistic."""

from __future__ import annotations

import torch


def naive_torch_loop(tensors: list[torch.Tensor]) -> list[tuple[float, ...]]:
    rows = []
    for t in tensors:
        rows.append((t.norm().item(), t.min().item(), t.max().item(), t.mean().item(), t.std().item(),
                     (t == 0).sum().item(), torch.isnan(t).sum().item(), torch.isinf(t).sum().item()))
    return rows
