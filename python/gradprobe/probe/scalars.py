"""One step's scalars: losses, metrics, learning rate, loss scale. Tensors are not read here (that
would synchronise with the GPU): CUDA values are copied to pinned memory with an event, and the
consumer thread reads them one step later.

A value that is not one number (None, a string, a tensor or array of several elements, a complex
number) drops that scalar only, never the rest of the step; `on_bad(name, reason)` is told."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .consumer import ScalarItem


def scalar_item(mode: str, step: int, loss: Any, losses: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None,
                optimizers: Sequence[torch.optim.Optimizer], scaler: Any,
                on_bad: Callable[[str, str], None]) -> ScalarItem:
    values: dict[str, Any] = {}
    if loss is not None:
        values["loss"] = loss
    for name, value in (losses or {}).items():
        values[f"loss/{name}"] = value
    for name, value in (metrics or {}).items():
        values[f"metric/{name}"] = value
    if mode == "train" and optimizers:
        values["lr"] = optimizers[0].param_groups[0].get("lr", float("nan"))
    if scaler is not None and hasattr(scaler, "get_scale"):
        scale = getattr(scaler, "_scale", None)
        values["loss_scale"] = scale if isinstance(scale, torch.Tensor) else scaler.get_scale()
    ready = None
    for name, value in list(values.items()):
        problem = _not_a_number(value)
        if problem is not None:
            del values[name]
            on_bad(name, problem)
            continue
        if isinstance(value, torch.Tensor):
            if not value.is_cuda:
                values[name] = value.item()  # on the CPU reading it costs nothing (no device to wait for)
                continue
            # Into pinned memory: a copy to pageable memory would synchronise the host.
            host = torch.empty((), dtype=value.dtype, pin_memory=True)
            values[name] = host.copy_(value.detach().reshape(()), non_blocking=True)
            ready = torch.cuda.Event()
        elif isinstance(value, np.ndarray):
            values[name] = float(value.reshape(()))
        else:
            values[name] = float(value)
    if ready is not None:
        ready.record()
    return ScalarItem(step, mode, values, ready)


def _not_a_number(value: Any) -> str | None:
    """Why a value cannot be recorded as one scalar, or None when it can (checked without reading a tensor)."""
    if value is None:
        return "it is None"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        size = value.numel() if isinstance(value, torch.Tensor) else value.size
        if size != 1:
            return f"it is a {type(value).__name__} of {size} elements, not one"
        real = (not value.dtype.is_complex if isinstance(value, torch.Tensor)
                else np.issubdtype(value.dtype, np.number) and not np.issubdtype(value.dtype, np.complexfloating))
        if not real:
            return f"its dtype {value.dtype} is not a real number"
        return None
    if isinstance(value, numbers.Real):
        return None
    return f"it is a {type(value).__name__}, not a number"
