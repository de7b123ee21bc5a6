"""accelerate: a probe on the prepared model and optimizer, and one call per iteration.

    accelerator = Accelerator(gradient_accumulation_steps=4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    probe = attach(accelerator, model, optimizer, out_dir="runs/exp1")
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        if end_step(accelerator, probe, loss):
            break
    probe.close()

- Gradients are measured where the backward of the micro-batch that ends the step (accelerate's
  sync_gradients) completes them: accumulated, reduced across processes, and before any clipping
  (whichever function accelerate clips with) or unscaling (accelerator.scaler is passed on).
- `end_step` ends a probe step only when gradients were synchronised (a real optimizer step) and
  returns whether every process should stop: a stop asked on any rank is raised as accelerate's
  trigger (set_trigger) and read by all with check_trigger (one reduction, on real steps only).
- Under several processes the prepared model is a DistributedDataParallel: the probe splits the
  statistics work across the ranks (see gradprobe.probe.distributed).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..actions import Action
from ..probe import Probe
from ..probe.probe import ConfigLike
from ..rules import Rule
from .common import ProbeSettings


def attach(accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, out_dir: str | Path,
           config: ConfigLike = None, rules: Iterable[Rule] | str | None = None,
           actions: Iterable[Action] | None = None, exist: str = "error") -> Probe:
    """A Probe on what accelerator.prepare returned (the torch optimizer inside AcceleratedOptimizer)."""
    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"gradprobe: attach() needs the Accelerator, not a {type(accelerator).__name__}")
    probe = ProbeSettings(out_dir, config, rules, actions, exist).open(model, [optimizer],
                                                                      scaler=getattr(accelerator, "scaler", None))
    probe.set_step_end_signal(lambda: bool(accelerator.sync_gradients))
    return probe


def end_step(accelerator: Accelerator, probe: Probe, loss: Any = None) -> bool:
    """Ends the probe's step after a real optimizer step; True when every process should stop."""
    if not accelerator.sync_gradients:
        return False  # a micro-batch of accumulation: the step is not over
    probe.step(loss=loss.detach() if isinstance(loss, torch.Tensor) else loss)
    if probe.should_stop:
        accelerator.set_trigger()
    return bool(accelerator.check_trigger())
