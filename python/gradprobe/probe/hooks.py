"""The hooks a probe puts into torch, and their removal. On a healthy step the probe's Python runs
only in a handful of places, none per module or per parameter:

- the model's forward pre-hook and forward hook (with kwargs; the latter always called): the step
  timer, the NaN/Inf origin's kept inputs, token counts of the inputs, the output watch for the end
  of backward (grad_completion.py), and the end of an armed activation capture;
- optimizer step pre- and post-hooks: the step timer and the optimizer-step capture;
- post-accumulate-grad hooks on a few sentinel parameters (grad_completion.py);
- module and parameter registration hooks (global; they fire only when a model changes).
Per-module forward hooks exist only while activations are captured (due steps) or the NaN/Inf
origin records a broken step. Hooks stored on the user's model, parameters and optimizers are
OwnHooks: a saved or copied model carries none of the probe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from ..user_hooks import OwnHook
from .activations import ActivationCapture, select_modules
from .config import ProbeConfig
from .grad_completion import GradientCompletion, sentinel_parameters


class StepEvents(Protocol):
    """What the probe does at each hook (training thread; each call timed as gradprobe's own)."""

    def forward_begins(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None: ...
    def forward_ends(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                     output: Any) -> None: ...
    def optimizer_begins(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None: ...
    def optimizer_ends(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None: ...
    def backward_ended(self) -> None: ...
    def output_grad(self, index: int, grad: torch.Tensor) -> None: ...
    def model_changed(self, module: torch.nn.Module) -> None: ...


class ProbeHooks:
    def __init__(self, model: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer], config: ProbeConfig,
                 events: StepEvents, on_activations: Callable[[list[str], list[torch.Tensor]], None]) -> None:
        self._activation_collections = [c for c in config.collections if c.kind == "activation"]
        self.completion = GradientCompletion(events.backward_ended, events.output_grad)
        self.sentinels = sentinel_parameters(model)
        self._handles: list[Any] = [
            model.register_forward_pre_hook(OwnHook(events.forward_begins), with_kwargs=True),
            model.register_forward_hook(OwnHook(events.forward_ends), with_kwargs=True, always_call=True),
            *self.completion.watch_parameters(self.sentinels),
        ]
        for optimizer in optimizers:
            self._handles.append(optimizer.register_step_pre_hook(OwnHook(events.optimizer_begins)))
            self._handles.append(optimizer.register_step_post_hook(OwnHook(events.optimizer_ends)))

        # A parameter or module registered anywhere in the model (e.g. a resized embedding) rebuilds the plans.
        def registered(module: torch.nn.Module, name: str, value: Any) -> None:
            events.model_changed(module)

        self._handles.append(torch.nn.modules.module.register_module_parameter_registration_hook(registered))
        self._handles.append(torch.nn.modules.module.register_module_module_registration_hook(registered))
        self.activations: ActivationCapture | None = None
        if self._activation_collections:
            patterns = config.activation_modules

            def selects(name: str) -> bool:
                if patterns and not any(re.search(p, name) for p in patterns):
                    return False
                return any(c.selects(name) for c in self._activation_collections)

            self.activations = ActivationCapture(select_modules(model, selects, bool(patterns)), on_activations)

    def arm_activations(self, mode: str, step: int) -> None:
        """Forward hooks only for a step whose activations are due (they take one forward, then
        disarm themselves)."""
        if self.activations is not None and any(c.due(mode, step) for c in self._activation_collections):
            self.activations.arm()

    def disarm_activations(self) -> None:
        if self.activations is not None:
            self.activations.disarm()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.disarm_activations()
