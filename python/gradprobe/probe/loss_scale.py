"""The loss scale that measured gradients carry, so that they are recorded unscaled.

Gradients are measured where the backward completes them (grad_completion.py): before a GradScaler
unscales them. The consumer divides their statistics by the scale of that backward
(gradprobe.stats.divided: exact for the power-of-two scales GradScaler keeps). The scale comes from:
- the scaler given to the Probe (or by an integration), read when the gradients are measured;
- a fused optimizer's `grad_scale` attribute, which GradScaler.step sets when it leaves the
  unscaling to the optimizer's kernel (the gradients stay scaled in memory);
- a GradScaler found among the live objects (searched once, at the first optimizer step) that says it
  unscaled this optimizer's gradients.
The scale a step's backward used is still current at its optimizer step: GradScaler.update() runs after.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import torch
from torch.amp.grad_scaler import OptState


@dataclass
class ScaleReading:
    """A scale read without a host-device sync: a number, or a pinned copy and its event."""

    number: float | None = None
    pinned: torch.Tensor | None = None
    ready: Any = None  # torch.cuda.Event of the pinned copy

    @classmethod
    def of(cls, scale: torch.Tensor) -> ScaleReading:
        scale = scale.detach().reshape(())
        if not scale.is_cuda:
            return cls(number=float(scale))
        pinned = torch.empty((), dtype=scale.dtype, pin_memory=True)
        pinned.copy_(scale, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        return cls(pinned=pinned, ready=ready)

    def value(self) -> float:
        """The scale (waits for the copy: call it off the training thread)."""
        if self.number is None:
            assert self.pinned is not None
            if self.ready is not None:
                self.ready.synchronize()
            self.number = float(self.pinned)
        return self.number


def _scaling(scaler: Any) -> bool:
    is_enabled = getattr(scaler, "is_enabled", None)
    return scaler is not None and callable(is_enabled) and bool(is_enabled())


def find_unscaling_scaler(optimizer: torch.optim.Optimizer) -> Any:
    """A live GradScaler that has unscaled this optimizer's gradients in the current step, or None."""
    for candidate in gc.get_objects():
        if issubclass(type(candidate), torch.amp.GradScaler) and _scaling(candidate):  # type(): no __class__ lookups
            state = getattr(candidate, "_per_optimizer_states", {}).get(id(optimizer))
            if state is not None and state.get("stage") is OptState.UNSCALED:
                return candidate
    return None


class LossScale:
    def __init__(self, scaler: Any = None) -> None:
        self.scaler = scaler if _scaling(scaler) else None
        self.searched = False  # the one search among live objects has run

    def read(self) -> ScaleReading | None:
        """The known scaler's current scale (None: no scaler, or it has not scaled a loss yet)."""
        scale = getattr(self.scaler, "_scale", None) if self.scaler is not None else None
        return ScaleReading.of(scale) if isinstance(scale, torch.Tensor) else None

    def at_optimizer_step(self, optimizer: torch.optim.Optimizer | None) -> ScaleReading | None:
        """The scale of gradients measured before this step, when the known scaler did not give it."""
        grad_scale = getattr(optimizer, "grad_scale", None) if optimizer is not None else None
        if isinstance(grad_scale, torch.Tensor):
            return ScaleReading.of(grad_scale)
        if self.scaler is None and optimizer is not None and not self.searched:
            self.searched = True
            self.scaler = find_unscaling_scaler(optimizer)
            return self.read()
        return None
