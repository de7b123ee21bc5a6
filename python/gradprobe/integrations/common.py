"""What every framework adapter shares: the probe's arguments and opening the probe on the
framework's model and optimizers (the report at the end of training is gradprobe.report's
write_report_or_warn)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..actions import Action
from ..probe import Probe
from ..probe.config import resolve_config
from ..probe.probe import ConfigLike
from ..rules import Rule


@dataclass(frozen=True)
class ProbeSettings:
    """The Probe arguments a callback is given (see gradprobe.Probe)."""

    out_dir: str | Path
    config: ConfigLike = None
    rules: Iterable[Rule] | str | None = None
    actions: Iterable[Action] | None = None
    exist: str = "error"

    def open(self, model: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer], *,
             optimizer_hooks: bool = True, data_parallel: bool = False, scaler: Any = None) -> Probe:
        """data_parallel: the framework runs plain DDP on this (unwrapped) model, so the gradients
        are replicated: distributed "auto" becomes "replicated" (the probe cannot see the wrapper)."""
        config = resolve_config(self.config)
        if data_parallel and config.distributed == "auto":
            config = dataclasses.replace(config, distributed="replicated")
        rules = list(self.rules) if self.rules is not None and not isinstance(self.rules, str) else self.rules
        actions = list(self.actions) if self.actions is not None else None
        return Probe(model, [unwrap_optimizer(o) for o in optimizers], out_dir=self.out_dir, config=config,
                     rules=rules, actions=actions, exist=self.exist, optimizer_hooks=optimizer_hooks,
                     scaler=scaler)


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a framework's wrapper (accelerate's AcceleratedOptimizer,
    Lightning's LightningOptimizer): hooks belong on the object whose step() runs the update."""
    for _ in range(8):  # wrappers of wrappers, bounded
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if inner is None:
            break
        optimizer = inner
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"gradprobe: {type(optimizer).__name__} is not a torch.optim.Optimizer and wraps none")
    return optimizer


