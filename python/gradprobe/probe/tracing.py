"""Whether torch is tracing the model (torch.compile, torch.export) rather than running it: the
probe's forward hooks then do nothing, since their tensors are fake (no data) and their work would
enter the traced graph. Non-strict torch.export runs the module on fake tensors without either flag
set: a sample tensor of the call tells."""

from __future__ import annotations

from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch._subclasses.functional_tensor import FunctionalTensor

_FAKE = (FakeTensor, FunctionalTensor)


def tracing(sample: Any = None) -> bool:
    """True under torch.compile/torch.export tracing, or when `sample` (a tensor of the call) is fake."""
    if isinstance(sample, _FAKE):
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is None:
        return False
    if compiler.is_compiling():
        return True
    is_exporting = getattr(compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())


def first_tensor_of(args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> torch.Tensor | None:
    """The first tensor among a call's arguments (a sample for `tracing`)."""
    for value in args:
        if isinstance(value, torch.Tensor):
            return value
    for value in (kwargs or {}).values():
        if isinstance(value, torch.Tensor):
            return value
    return None
