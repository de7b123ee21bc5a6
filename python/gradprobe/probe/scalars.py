"""One step's scalars: losses, metrics, learning rate, loss scale. Tensors are not read here (that
would synchronise with the GPU): CUDA values are copied to pinned memory with an event, and the
consumer thread reads them one step later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .consumer import ScalarItem


def scalar_item(mode: str, step: int, loss: Any, losses: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None,
                optimizers: Sequence[torch.optim.Optimizer], scaler: Any) -> ScalarItem:
    values: dict[str, Any] = {}
    if loss is not None:
        values["loss"] = loss
    for name, value in (losses or {}).items():
        values[f"loss/{name}"] = value
    for name, value in (metrics or {}).items():
        values[f"metric/{name}"] = value
    if mode == "train" and optimizers:
        values["lr"] = float(optimizers[0].param_groups[0].get("lr", float("nan")))
    if scaler is not None and hasattr(scaler, "get_scale"):
        scale = getattr(scaler, "_scale", None)
        values["loss_scale"] = scale if isinstance(scale, torch.Tensor) else float(scaler.get_scale())
    ready = None
    for name, value in list(values.items()):
        if isinstance(value, torch.Tensor):
            value = value.detach()
            value = value.float().mean() if value.numel() != 1 else value.reshape(())
            if value.is_cuda:
                # Into pinned memory: a copy to pageable memory would synchronise the host.
                host = torch.empty((), dtype=value.dtype, pin_memory=True)
                value = host.copy_(value, non_blocking=True)
                ready = torch.cuda.Event()
            values[name] = value
    if ready is not None:
        ready.record()
    return ScalarItem(step, mode, values, ready)
